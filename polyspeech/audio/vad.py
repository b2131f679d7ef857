"""Voice activity detection with silero-vad (its package ships the model): speech regions of at
most 30 s, the units long audio is transcribed in."""

from __future__ import annotations

import functools

import numpy as np
import torch

from polyspeech.audio.io import SAMPLE_RATE


@functools.cache
def _silero():
    from silero_vad import load_silero_vad

    return load_silero_vad()


def speech_regions(samples: np.ndarray, max_seconds: float = 30.0) -> list[tuple[int, int]]:
    """``(start, end)`` sample indices of speech, each at most ``max_seconds`` long."""
    from silero_vad import get_speech_timestamps

    model = _silero()
    model.reset_states()
    with torch.inference_mode():
        stamps = get_speech_timestamps(
            torch.from_numpy(samples),
            model,
            sampling_rate=SAMPLE_RATE,
            max_speech_duration_s=max_seconds,
            speech_pad_ms=100,
        )
    return [(int(stamp["start"]), int(stamp["end"])) for stamp in stamps]


def pieces(samples: np.ndarray, max_seconds: float, vad: bool) -> list[tuple[int, int]]:
    """The pieces long audio is handled in: speech regions with ``vad``, else consecutive
    windows of ``max_seconds`` (the last one shorter)."""
    if vad:
        return speech_regions(samples, max_seconds)
    step = int(max_seconds * SAMPLE_RATE)
    return [(start, min(start + step, len(samples))) for start in range(0, len(samples), step)]
