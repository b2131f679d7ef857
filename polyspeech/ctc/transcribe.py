"""Long-form CTC transcription in pieces of at most 30 s, batched: memory is bounded by the
piece size and the batch, whatever the length of the file.

With VAD (the default), the pieces are silero-vad's speech regions, and each becomes a segment.
Without, the pieces are fixed 30 s windows run with 2 s of context on both sides; only the frames
of a window's own span are kept, so the stitched log-probabilities match one pass over the whole
file except within reach of the context edges.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from polyspeech.audio import SAMPLE_RATE
from polyspeech.audio.vad import speech_regions
from polyspeech.ctc.decode import make_decoder
from polyspeech.ctc.model import CtcModel
from polyspeech.results import Result, Segment, Word
from polyspeech.text.languages import is_written_without_spaces

WINDOW = 30.0  # seconds of audio a window keeps
CONTEXT = 2.0  # seconds of audio either side, run and then cut off


def _windows(length: int) -> list[tuple[int, int]]:
    step = int(WINDOW * SAMPLE_RATE)
    return [(start, min(start + step, length)) for start in range(0, length, step)]


def guess_language(model: CtcModel, pieces: list[np.ndarray]) -> str:
    """The language whose adapter explains the audio best: the highest mean log-probability of
    its own best path over the first pieces (up to 30 s), tried in every language of the model."""
    budget, chosen = int(WINDOW * SAMPLE_RATE), []
    for piece in pieces:
        chosen.append(piece[:budget])
        budget -= len(chosen[-1])
        if budget <= 0:
            break
    scores = {
        lang: float(np.mean([lp.max(axis=-1).mean() for lp in model.log_probs(chosen, lang)]))
        for lang in model.languages
    }
    return max(scores, key=scores.__getitem__)


def window_log_probs(
    model: CtcModel,
    samples: np.ndarray,
    windows: list[tuple[int, int]],
    context: int,
    lang: str | None,
    batch_size: int,
) -> Iterator[tuple[int, np.ndarray]]:
    """For each window (start, end in samples), its start and the log-probabilities of its own
    frames: the window runs with ``context`` samples either side, whose frames are cut off."""
    for first in range(0, len(windows), batch_size):
        group = windows[first : first + batch_size]
        clips = [samples[max(0, s - context) : e + context] for s, e in group]
        for (start, end), log_probs in zip(group, model.log_probs(clips, lang), strict=True):
            lead = (start - max(0, start - context)) / SAMPLE_RATE
            first_frame = round(lead / model.frame_shift)
            last_frame = first_frame + round((end - start) / SAMPLE_RATE / model.frame_shift)
            yield start, log_probs[first_frame:last_frame]


def stitched_log_probs(
    model: CtcModel,
    samples: np.ndarray,
    lang: str | None,
    batch_size: int = 4,
    columns: np.ndarray | None = None,
    with_best: bool = False,
) -> np.ndarray:
    """Log-probabilities of a whole file (frames x classes), from 30 s windows with context.

    ``columns`` keeps only those classes, so a large vocabulary costs no more than it needs;
    ``with_best`` appends one more column: each frame's best log-probability over all classes.
    """
    pieces = []
    windows = _windows(len(samples))
    context = int(CONTEXT * SAMPLE_RATE)
    for _, log_probs in window_log_probs(model, samples, windows, context, lang, batch_size):
        kept = log_probs if columns is None else log_probs[:, columns]
        if with_best:
            kept = np.concatenate([kept, log_probs.max(axis=1, keepdims=True)], axis=1)
        pieces.append(kept)
    width = len(model.vocabulary(lang)) if columns is None else len(columns)
    width += int(with_best)
    return np.concatenate(pieces) if pieces else np.zeros((0, width), np.float32)


def transcribe(
    model: CtcModel,
    samples: np.ndarray,
    lang: str | None,
    batch_size: int = 4,
    vad: bool = True,
    lm: str | os.PathLike | None = None,
) -> Result:
    """Transcribe 16 kHz mono samples of any length; one segment per piece with speech.

    Without ``lang``, a model with several languages picks one with :func:`guess_language`.
    """
    context = 0 if vad else int(CONTEXT * SAMPLE_RATE)
    windows = speech_regions(samples, WINDOW) if vad else _windows(len(samples))
    if lang is None and len(model.languages) > 1:
        if not windows:
            return Result("", None, [], round(len(samples) / SAMPLE_RATE, 3))
        lang = guess_language(model, [samples[s:e] for s, e in windows])
    vocabulary = model.vocabulary(lang)
    by_character = lang is not None and is_written_without_spaces(lang)
    decoder = make_decoder(vocabulary, by_character, lm, lang)
    joiner = "" if by_character else " "
    segments: list[Segment] = []
    shift = model.frame_shift
    for start, log_probs in window_log_probs(model, samples, windows, context, lang, batch_size):
        offset = start / SAMPLE_RATE
        words = [
            Word(
                span.text,
                round(offset + span.start_frame * shift, 3),
                round(offset + (span.end_frame + 1) * shift, 3),
                round(span.score, 4),
            )
            for span in decoder.words(log_probs)
        ]
        if words:
            text = joiner.join(word.text for word in words)
            segments.append(Segment(words[0].start, words[-1].end, text, words))
    text = joiner.join(segment.text for segment in segments)
    return Result(
        text, model.resolve_language(lang), segments, round(len(samples) / SAMPLE_RATE, 3)
    )
