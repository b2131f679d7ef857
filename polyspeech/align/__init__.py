"""Forced alignment: ``polyspeech.align(audio, lines, ...)``, the exact Viterbi kernel
(:mod:`polyspeech.align.viterbi`), transcripts (:mod:`.transcript`), spans (:mod:`.spans`) and
segmentation (:mod:`.segment`).

The package is callable, so that ``polyspeech.align(...)`` works though ``polyspeech.align`` is
also the name of this package.
"""

from __future__ import annotations

import sys
import types

from polyspeech.audio.io import SAMPLE_RATE


def align(
    audio,
    lines: list[str],
    lang: str | None = None,
    model="builtin:align",
    granularity: str = "word",
    star: bool = False,
    batch_size: int = 4,
    sample_rate: int = SAMPLE_RATE,
):
    """Align ``audio`` (anything :func:`polyspeech.load_audio` takes; an array's rate is
    ``sample_rate``) to ``lines``, one utterance each; returns
    :class:`polyspeech.align.spans.AlignmentResult` (spans in seconds).

    ``model`` is a loaded CTC model or one to load (:func:`polyspeech.align.spans.load_aligner`):
    a folder, a builtin name (``builtin:align``: any language, romanised), a Hub id (an MMS
    model such as ``facebook/mms-1b-all``) or a resolved :class:`polyspeech.hub.ModelSource`.
    """
    import numpy as np

    from polyspeech.align.spans import align_transcript, load_aligner
    from polyspeech.audio import load_audio

    aligner = load_aligner(model)
    rate = sample_rate if isinstance(audio, np.ndarray) else None
    samples = load_audio(audio, source_rate=rate)
    return align_transcript(aligner, samples, lines, lang, granularity, star, batch_size)


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return align(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
