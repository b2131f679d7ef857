"""Long-form CTC transcription in pieces of at most 30 s, batched: memory is bounded by the
piece size and the batch, whatever the length of the file.

With VAD (the default), the pieces are silero-vad's speech regions, and each becomes a segment.
Without, the pieces are fixed 30 s windows run with 2 s of context on both sides; only the frames
of a window's own span are kept, so the stitched log-probabilities match one pass over the whole
file except within reach of the context edges.
"""

from __future__ import annotations

import os

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
    segments: list[Segment] = []
    for first in range(0, len(windows), batch_size):
        group = windows[first : first + batch_size]
        clips = [samples[max(0, s - context) : e + context] for s, e in group]
        for (start, end), log_probs in zip(group, model.log_probs(clips, lang), strict=True):
            lead = (start - max(0, start - context)) / SAMPLE_RATE
            first_frame = round(lead / model.frame_shift)
            last_frame = first_frame + round((end - start) / SAMPLE_RATE / model.frame_shift)
            offset, shift = start / SAMPLE_RATE, model.frame_shift
            words = [
                Word(
                    span.text,
                    round(offset + span.start_frame * shift, 3),
                    round(offset + (span.end_frame + 1) * shift, 3),
                    round(span.score, 4),
                )
                for span in decoder.words(log_probs[first_frame:last_frame])
            ]
            if words:
                joiner = "" if by_character else " "
                text = joiner.join(word.text for word in words)
                segments.append(Segment(words[0].start, words[-1].end, text, words))
    joiner = "" if by_character else " "
    text = joiner.join(segment.text for segment in segments)
    return Result(
        text, model.resolve_language(lang), segments, round(len(samples) / SAMPLE_RATE, 3)
    )
