"""Long-form CTC transcription: windows of at most 30 s with context, batched, stitched by frame.

Each window is run with a few seconds of context on both sides; only the frames of its own span
are kept, so the stitched log-probabilities equal a pass over the whole file up to the edges of
the context, while memory stays bounded by the window size and the batch.
"""

from __future__ import annotations

import numpy as np

from polyspeech.audio import SAMPLE_RATE
from polyspeech.ctc.decode import CharSpan, greedy_decode
from polyspeech.ctc.model import CtcModel
from polyspeech.results import Result, Segment, Word
from polyspeech.text.languages import is_written_without_spaces

WINDOW = 30.0  # seconds of audio a window keeps
CONTEXT = 2.0  # seconds of audio either side, run and then cut off


def _windows(length: int) -> list[tuple[int, int]]:
    step = int(WINDOW * SAMPLE_RATE)
    return [(start, min(start + step, length)) for start in range(0, length, step)]


def _words(spans: list[CharSpan], offset: float, shift: float, by_character: bool) -> list[Word]:
    words: list[Word] = []
    current: list[CharSpan] = []
    for span in [*spans, None]:
        if span is None or span.text == " " or by_character:
            if by_character and span is not None and span.text != " ":
                current = [span]
            if current:
                words.append(
                    Word(
                        "".join(s.text for s in current),
                        round(offset + current[0].start_frame * shift, 3),
                        round(offset + (current[-1].end_frame + 1) * shift, 3),
                        round(float(np.mean([s.score for s in current])), 4),
                    )
                )
            current = []
        else:
            current.append(span)
    return words


def transcribe(
    model: CtcModel, samples: np.ndarray, lang: str | None, batch_size: int = 4
) -> Result:
    """Transcribe 16 kHz mono samples of any length; one segment per window with speech."""
    vocabulary = model.vocabulary(lang)
    by_character = lang is not None and is_written_without_spaces(lang)
    context = int(CONTEXT * SAMPLE_RATE)
    windows = _windows(len(samples))
    segments: list[Segment] = []
    for first in range(0, len(windows), batch_size):
        group = windows[first : first + batch_size]
        clips = [samples[max(0, s - context) : e + context] for s, e in group]
        for (start, end), log_probs in zip(group, model.log_probs(clips, lang), strict=True):
            lead = (start - max(0, start - context)) / SAMPLE_RATE
            first_frame = round(lead / model.frame_shift)
            last_frame = first_frame + round((end - start) / SAMPLE_RATE / model.frame_shift)
            spans = greedy_decode(log_probs[first_frame:last_frame], vocabulary)
            words = _words(spans, start / SAMPLE_RATE, model.frame_shift, by_character)
            if words:
                joiner = "" if by_character else " "
                text = joiner.join(word.text for word in words)
                segments.append(Segment(words[0].start, words[-1].end, text, words))
    joiner = "" if by_character else " "
    text = joiner.join(segment.text for segment in segments)
    return Result(
        text, model.resolve_language(lang), segments, round(len(samples) / SAMPLE_RATE, 3)
    )
