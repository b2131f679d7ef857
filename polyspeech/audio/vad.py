"""Voice activity detection with silero-vad (its package ships the model): speech regions of at
most 30 s, the units long audio is transcribed in.

Each region keeps 0.4 s of the audio around its speech (faster-whisper's padding; silero's own
default, 30 ms, and 100 ms cut into word onsets and endings: docs/guide.md, "Recognition").
Regions less than 0.8 s apart then touch, the pause shared between them.

silero hears each file levelled: its loud parts (the 95th percentile of its 32 ms chunks' RMS)
raised to :data:`LOUD_LEVEL` dBFS, by at most :data:`MAX_GAIN` dB, never lowered. Clean speech
keeps its regions at any level, but under music or noise silero's speech probability falls with
the level, so levelled quiet files keep more of their speech, while noise, hum or music alone
still yields none; the cap keeps near-silence (dither, a room's hum) from being raised to the
level of speech all the same. Under music louder than the speech, a lower ``threshold`` finds
more (figures: docs/guide.md, "Measurements behind the code's choices").

Several files are detected together: silero's network is recurrent over 32 ms chunks, and a
chunk costs about as much alone as in a batch, so files of similar length run side by side, one
row each (rows do not interact), and silero's own rules turn each row's probabilities into
regions.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from polyspeech.audio.io import SAMPLE_RATE
from polyspeech.errors import InputError

CHUNK = 512  # samples silero-vad hears at a time at 16 kHz
SPEECH_PAD_MS = 400  # audio kept on each side of the speech silero-vad finds
LOUD_LEVEL = -15.0  # dBFS silero hears a file's loud parts at, where they are quieter
LOUD_PERCENTILE = 95  # of a file's chunks' RMS: its loud parts
MAX_GAIN = 30.0  # dB a file is raised by at most


@functools.cache
def silero():
    """silero-vad's package, imported keeping torch's thread count: its import sets torch to
    one thread for the whole process (``torch.set_num_threads(1)`` in ``silero_vad.model``),
    which slowed everything run after it (docs/benchmarks.md, "Speed and memory")."""
    threads = torch.get_num_threads()
    try:
        import silero_vad
    finally:
        torch.set_num_threads(threads)
    return silero_vad


@functools.cache
def _model():
    return silero().load_silero_vad()


def _groups(lengths: list[int]) -> list[list[int]]:
    """Indices of files to detect together: by length, longest first, each group's files at
    least half as long as its longest (so padding at most doubles the work)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
    groups: list[list[int]] = []
    for index in order:
        if groups and 2 * lengths[index] >= lengths[groups[-1][0]]:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def level_gain(samples: np.ndarray) -> float:
    """The factor that brings ``samples``' loud parts (the :data:`LOUD_PERCENTILE` th percentile
    of its chunks' RMS) up to :data:`LOUD_LEVEL` dBFS, at least 1, at most :data:`MAX_GAIN` dB."""
    whole = samples[: len(samples) // CHUNK * CHUNK].reshape(-1, CHUNK).astype(np.float64)
    if not len(whole):  # under one chunk: its own RMS
        whole = samples[None].astype(np.float64)
    loud = float(np.percentile(np.sqrt((whole**2).mean(axis=1)), LOUD_PERCENTILE))
    target, most = 10 ** (LOUD_LEVEL / 20), 10 ** (MAX_GAIN / 20)
    return float(np.clip(target / max(loud, target / most), 1.0, most))


def check_threshold(threshold: float) -> None:
    """Refuse a speech-probability threshold outside (0, 1)."""
    if not 0 < threshold < 1:
        raise InputError(f"vad threshold must be between 0 and 1 (exclusive), got {threshold:g}")


@torch.inference_mode()
def _probabilities(files: list[np.ndarray]) -> list[list[float]]:
    """Per file, silero's speech probability of each 512-sample chunk (the last zero-padded),
    the file heard at its :func:`level_gain`."""
    model = _model()
    chunks = [-(-len(samples) // CHUNK) for samples in files]
    width = max(chunks) * CHUNK
    batch = torch.zeros(len(files), width)
    for row, samples in enumerate(files):
        batch[row, : len(samples)] = torch.from_numpy(samples) * level_gain(samples)
    model.reset_states()
    columns = [model(batch[:, i : i + CHUNK], SAMPLE_RATE)[:, 0] for i in range(0, width, CHUNK)]
    table = torch.stack(columns, dim=1) if columns else torch.zeros(len(files), 0)
    return [table[row, :count].tolist() for row, count in enumerate(chunks)]


def speech_regions(
    files: Sequence[np.ndarray], max_seconds: float = 30.0, threshold: float = 0.5
) -> list[list[tuple[int, int]]]:
    """Per file, ``(start, end)`` sample indices of speech, each at most ``max_seconds`` long:
    the chunks whose speech probability is above ``threshold`` (silero's rules, as
    faster-whisper's ``VadOptions.threshold``)."""
    check_threshold(threshold)
    regions: list[list[tuple[int, int]]] = [[] for _ in files]
    for group in _groups([len(samples) for samples in files]):
        voiced = [i for i in group if len(files[i])]
        if not voiced:
            continue
        for index, probabilities in zip(
            voiced, _probabilities([files[i] for i in voiced]), strict=True
        ):
            stamps = silero().get_speech_timestamps_from_probs(
                probabilities,
                sampling_rate=SAMPLE_RATE,
                threshold=threshold,
                max_speech_duration_s=max_seconds,
                speech_pad_ms=SPEECH_PAD_MS,
                audio_length_samples=len(files[index]),
            )
            regions[index] = [(int(s["start"]), int(s["end"])) for s in stamps]
    return regions


def pieces(
    files: Sequence[np.ndarray], max_seconds: float, vad: bool, threshold: float = 0.5
) -> list[list[tuple[int, int]]]:
    """Per file, the pieces long audio is handled in: speech regions with ``vad`` (see
    :func:`speech_regions` for ``threshold``), else consecutive windows of ``max_seconds`` (the
    last one shorter). A ``threshold`` outside (0, 1) is refused either way."""
    check_threshold(threshold)
    if vad:
        return speech_regions(files, max_seconds, threshold)
    step = int(max_seconds * SAMPLE_RATE)
    return [[(s, min(s + step, len(f))) for s in range(0, len(f), step)] for f in files]
