"""Forced alignment of a recording to its transcript: spans of words, characters or lines.

Emissions come from 30 s windows with context (``stitched_log_probs``), keeping only the
classes the transcript uses, so memory follows the file's frames, not the vocabulary. The
exact Viterbi kernel (:mod:`polyspeech.align.viterbi`) finds the best path. With ``star``, a
``<star>`` token at the start, between lines and at the end absorbs audio the transcript does
not cover. Its log-probability in a frame is that of the frame's best class less
``STAR_MARGIN``: it takes frames where the model hears something the transcript does not say,
and leaves blank frames and the transcript's own tokens alone. (MMS gives it 0 everywhere; then
it also takes every frame but the best one from the first and last token of each line, and line
starts come late.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polyspeech.align.transcript import (
    UNIVERSAL,
    Transcript,
    TranscriptWord,
    prepare_transcript,
)
from polyspeech.align.viterbi import align as viterbi_align
from polyspeech.audio import SAMPLE_RATE
from polyspeech.ctc.model import MIN_SAMPLES, CtcModel
from polyspeech.ctc.transcribe import stitched_log_probs
from polyspeech.errors import InputError
from polyspeech.hub import ModelSource, resolve_model
from polyspeech.results import Span
from polyspeech.weights import loading_model

GRANULARITIES = ("word", "char", "line")
STAR_MARGIN = 0.5


@dataclass(frozen=True)
class AlignmentResult:
    spans: list[Span]
    line_spans: list[Span]  # one per transcript line, whatever the granularity
    unmapped: dict[str, int]  # transcript characters no token stands for, with counts


def _sequence(
    transcript: Transcript, column: dict[int, int], star: int | None
) -> tuple[list[int], list[int]]:
    """The token sequence to align, and for each token the index of its word (-1 for
    separators and stars)."""
    sequence: list[int] = []
    owners: list[int] = []
    previous_line = None
    for index, word in enumerate(transcript.words):
        if not word.tokens:
            continue
        if star is not None and word.line != previous_line:
            sequence.append(star)
            owners.append(-1)
        elif sequence and transcript.delimiter is not None:
            sequence.append(column[transcript.delimiter])
            owners.append(-1)
        previous_line = word.line
        sequence.extend(column[token] for token in word.tokens)
        owners.extend([index] * len(word.tokens))
    if star is not None:
        sequence.append(star)
        owners.append(-1)
    return sequence, owners


def _span(text: str, frames: list[tuple[int, int, float]], shift: float) -> Span:
    """A span over tokens given as (first frame, end frame, summed probability)."""
    count = sum(end - start for start, end, _ in frames)
    score = sum(total for _, _, total in frames) / count
    return Span(
        text, round(frames[0][0] * shift, 3), round(frames[-1][1] * shift, 3), round(score, 4)
    )


def _gap(text: str, time: float) -> Span:
    """A span for text that no token stands for: no duration, no confidence."""
    return Span(text, time, time, 0.0)


def _word_spans(
    word: TranscriptWord, tokens: list[tuple[int, int, float]], granularity: str, shift: float
) -> list[Span]:
    if granularity == "word":
        return [_span(word.text, tokens, shift)]
    spans: list[Span] = []
    start = 0
    for char, end in zip(word.text, word.char_ends, strict=True):
        if end > start:
            spans.append(_span(char, tokens[start:end], shift))
        elif spans:  # punctuation and the like join the character before them
            last = spans[-1]
            spans[-1] = Span(last.text + char, last.start, last.end, last.score)
        else:
            spans.append(_gap(char, round(tokens[0][0] * shift, 3)))
        start = end
    return spans


def load_aligner(model) -> CtcModel:
    """``model`` itself if it is loaded (it has ``log_probs``), else the CTC model it names: a
    folder, a builtin name (``builtin:align``), a Hub id or a resolved :class:`ModelSource`,
    on the CPU in the precision ``auto`` picks."""
    if hasattr(model, "log_probs"):
        return model
    source = model if isinstance(model, ModelSource) else resolve_model(model)
    with loading_model(source.folder):
        return CtcModel(source, precision="auto")


def align_transcript(
    model: CtcModel,
    samples: np.ndarray,
    lines: list[str],
    lang: str | None = None,
    granularity: str = "word",
    star: bool = False,
    batch_size: int = 4,
) -> AlignmentResult:
    """Align 16 kHz samples to ``lines`` (one utterance each) with a CTC model."""
    if granularity not in GRANULARITIES:
        raise InputError(f"unknown granularity {granularity!r}; use {', '.join(GRANULARITIES)}")
    if len(samples) < MIN_SAMPLES:
        raise InputError(
            f"audio is {len(samples) / SAMPLE_RATE:.3f} s long, too short to align "
            f"(at least {MIN_SAMPLES / SAMPLE_RATE:g} s)"
        )
    model_lang = lang
    if lang is not None and model.languages == [UNIVERSAL]:
        model_lang = UNIVERSAL  # one model for every language; ``lang`` still guides the text
    vocabulary = model.vocabulary(model_lang)
    transcript = prepare_transcript(lines, vocabulary, lang)
    used = sorted({t for word in transcript.words for t in word.tokens})
    if not used:
        raise InputError("no character of the transcript is in the model's vocabulary")
    if transcript.delimiter is not None and transcript.delimiter not in used:
        used.append(transcript.delimiter)
    columns = np.array([vocabulary.blank, *used])
    column = {token: index for index, token in enumerate(columns.tolist())}
    emissions = stitched_log_probs(model, samples, model_lang, batch_size, columns, with_best=star)
    star_column = None
    if star:
        emissions[:, -1] -= STAR_MARGIN
        star_column = len(columns)
    sequence, owners = _sequence(transcript, column, star_column)
    path = viterbi_align(emissions, np.array(sequence), blank=0)
    token_frames = path.token_frames()
    state_tokens = np.array([0, *sequence])[np.where(path.states % 2 == 1, path.states // 2 + 1, 0)]
    frame_probabilities = np.exp(emissions[np.arange(len(state_tokens)), state_tokens])
    per_word: dict[int, list[tuple[int, int, float]]] = {}
    for word, (start, end) in zip(owners, token_frames.tolist(), strict=True):
        if word >= 0:
            total = float(frame_probabilities[start:end].sum())
            per_word.setdefault(word, []).append((start, end, total))
    shift = model.frame_shift
    spans: list[Span] = []
    line_tokens: dict[int, list[tuple[int, int, float]]] = {}
    time = 0.0
    for index, word in enumerate(transcript.words):
        if index not in per_word:
            spans.append(_gap(word.text, time))
            continue
        pieces = _word_spans(word, per_word[index], granularity, shift)
        spans.extend(pieces)
        time = pieces[-1].end
        line_tokens.setdefault(word.line, []).extend(per_word[index])
    line_spans: list[Span] = []
    for number, text in enumerate(transcript.lines):
        if number in line_tokens:
            line_spans.append(_span(text, line_tokens[number], shift))
        else:
            line_spans.append(_gap(text, line_spans[-1].end if line_spans else 0.0))
    if granularity == "line":
        spans = line_spans
    return AlignmentResult(spans, line_spans, dict(transcript.unmapped))
