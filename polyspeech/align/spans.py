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

CTC gives a word's first and last letters a frame or two where the sound lasts longer, so a
word's edges are then fitted to the audio (:func:`fit_edges`): moved out over voiced frames no
other word holds (at most ``EDGE_REACH`` seconds, half a gap each way) and in over silent ones
(a last word held over the file's trailing silence ends where the speech does).
"""

from __future__ import annotations

from collections.abc import Callable
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
EDGE_REACH = 0.06  # seconds a word's edge may move out over voiced frames
VOICED_SHARE = 0.3  # of the way from the quiet floor (10th percentile) to speech (90th), in dB
QUIET_RANGE_DB = 10.0  # a file whose speech stands less above its floor has no silence to tell


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


def _moved(span: Span, start: float | None = None, end: float | None = None) -> Span:
    """``span`` with a fitted start or end (see :func:`fit_edges`)."""
    return Span(
        span.text,
        span.start if start is None else round(min(start, span.end), 3),
        span.end if end is None else round(max(end, span.start), 3),
        span.score,
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


def voiced_frames(samples: np.ndarray, frames: int, shift: float) -> np.ndarray | None:
    """Whether each of ``frames`` frames of ``shift`` seconds is louder than the file's quiet
    floor by :data:`VOICED_SHARE` of the way to its speech level (all in dB); None where the
    two are less than :data:`QUIET_RANGE_DB` apart (no silence to tell speech from)."""
    width = max(1, round(shift * SAMPLE_RATE))
    padded = np.zeros(frames * width, np.float32)
    used = min(len(samples), len(padded))
    padded[:used] = samples[:used]
    level = 10 * np.log10(np.mean(padded.reshape(frames, width) ** 2, axis=1) + 1e-10)
    floor, speech = np.percentile(level, [10, 90])
    if speech - floor < QUIET_RANGE_DB:
        return None
    return level > floor + VOICED_SHARE * (speech - floor)


def fit_edges(
    edges: list[tuple[int, int]], voiced: np.ndarray, reach: int
) -> list[tuple[int, int]]:
    """Words' (first frame, end frame) in order, each edge moved out over voiced frames (at most
    ``reach``, never past half the gap to the next word) and in over unvoiced ones (keeping at
    least one frame)."""
    fitted = []
    for index, (start, end) in enumerate(edges):
        before = edges[index - 1][1] if index else 0
        after = edges[index + 1][0] if index + 1 < len(edges) else len(voiced)
        low = max(start - reach, (before + start + 1) // 2)
        high = min(end + reach, (end + after) // 2)
        while end - 1 > start and not voiced[end - 1]:
            end -= 1
        while start + 1 < end and not voiced[start]:
            start += 1
        if end == edges[index][1]:  # not trimmed: the sound may go on past the last letter
            while end < high and voiced[end]:
                end += 1
        if start == edges[index][0]:
            while start > low and voiced[start - 1]:
                start -= 1
        fitted.append((start, end))
    return fitted


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
    on_window: Callable[[], None] | None = None,
) -> AlignmentResult:
    """Align 16 kHz samples to ``lines`` (one utterance each) with a CTC model; ``on_window``
    is called as each 30 s window is heard (a progress bar)."""
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
    emissions = stitched_log_probs(
        model, samples, model_lang, batch_size, columns, with_best=star, on_window=on_window
    )
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
    order = sorted(per_word)
    voiced = voiced_frames(samples, len(emissions), shift)
    raw = [(per_word[i][0][0], per_word[i][-1][1]) for i in order]
    if voiced is not None:
        raw = fit_edges(raw, voiced, round(EDGE_REACH / shift))
    edges = dict(zip(order, raw, strict=True))
    spans: list[Span] = []
    line_tokens: dict[int, list[tuple[int, int, float]]] = {}
    line_edges: dict[int, list[int]] = {}
    time = 0.0
    for index, word in enumerate(transcript.words):
        if index not in per_word:
            spans.append(_gap(word.text, time))
            continue
        pieces = _word_spans(word, per_word[index], granularity, shift)
        first, end = edges[index]
        pieces[0] = _moved(pieces[0], start=first * shift)
        pieces[-1] = _moved(pieces[-1], end=end * shift)
        spans.extend(pieces)
        time = pieces[-1].end
        line_tokens.setdefault(word.line, []).extend(per_word[index])
        line_edges.setdefault(word.line, [first, end])[1] = end
    line_spans: list[Span] = []
    for number, text in enumerate(transcript.lines):
        if number in line_tokens:
            first, end = line_edges[number]
            span = _span(text, line_tokens[number], shift)
            line_spans.append(_moved(span, start=first * shift, end=end * shift))
        else:
            line_spans.append(_gap(text, line_spans[-1].end if line_spans else 0.0))
    if granularity == "line":
        spans = line_spans
    return AlignmentResult(spans, line_spans, dict(transcript.unmapped))
