"""Long-form CTC transcription in pieces of at most 30 s, batched: memory is bounded by the
piece size and the batch, whatever the length of the file.

With VAD (the default), the pieces are silero-vad's speech regions, and each becomes a segment.
Without, the pieces are fixed 30 s windows run with 2 s of context on both sides; only the frames
of a window's own span are kept, so the stitched log-probabilities match one pass over the whole
file except within reach of the context edges.

Language ``auto`` (the default for a model of several languages) has a language-ID model name
each piece's language among the recogniser's, and routes the piece to that adapter, so a file
that switches language is transcribed in each of its languages.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator

import numpy as np

from polyspeech.audio import SAMPLE_RATE
from polyspeech.audio.vad import speech_regions
from polyspeech.ctc.decode import make_decoder
from polyspeech.ctc.lid import LidModel
from polyspeech.ctc.model import CtcModel
from polyspeech.errors import InputError
from polyspeech.results import Result, Segment, Word
from polyspeech.text.languages import is_written_without_spaces

WINDOW = 30.0  # seconds of audio a window keeps
CONTEXT = 2.0  # seconds of audio either side, run and then cut off
AUTO = "auto"  # the language: identified per piece
SHORTEST_IDENTIFIED = 1.0  # seconds: a shorter piece takes the language of the whole file


def _windows(length: int) -> list[tuple[int, int]]:
    step = int(WINDOW * SAMPLE_RATE)
    return [(start, min(start + step, length)) for start in range(0, length, step)]


def identify_pieces(
    model: CtcModel,
    identifier: LidModel,
    samples: np.ndarray,
    windows: list[tuple[int, int]],
) -> tuple[list[tuple[str, float]], dict[str, float]]:
    """Each piece's language and its probability, and the file's probabilities (the pieces'
    weighted by their durations); both over the languages the recogniser and the LID model have
    in common, renormalised. A piece under :data:`SHORTEST_IDENTIFIED` takes the file's choice."""
    known = [lang for lang in model.languages if lang in identifier.labels]
    if not known:
        raise InputError(
            f"{identifier.folder}: this language-ID model knows none of the languages of "
            f"{model.folder} ({', '.join(model.languages)}); choose one with --lang"
        )
    columns = [identifier.labels.index(lang) for lang in known]
    probabilities = identifier.probabilities([samples[s:e] for s, e in windows])[:, columns]
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    seconds = np.array([(e - s) / SAMPLE_RATE for s, e in windows])
    overall = (probabilities * seconds[:, None]).sum(0) / seconds.sum()
    chosen = []
    for length, row in zip(seconds, probabilities, strict=True):
        row = row if length >= SHORTEST_IDENTIFIED else overall
        best = int(row.argmax())
        chosen.append((known[best], round(float(row[best]), 4)))
    return chosen, {lang: float(p) for lang, p in zip(known, overall, strict=True)}


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
    identifier: LidModel | None = None,
) -> Result:
    """Transcribe 16 kHz mono samples of any length; one segment per piece with speech, with
    its language (and, when identified, that language's probability).

    With an ``identifier`` (language ``auto``), it names each piece's language
    (:func:`identify_pieces`); the result's language is the one of the most speech, and its
    probability the file's. Without, every piece is in ``lang``.
    """
    context = 0 if vad else int(CONTEXT * SAMPLE_RATE)
    windows = speech_regions(samples, WINDOW) if vad else _windows(len(samples))
    duration = round(len(samples) / SAMPLE_RATE, 3)
    routed = identifier is not None
    if routed and not windows:
        return Result("", None, [], duration)
    if routed:
        chosen, overall = identify_pieces(model, identifier, samples, windows)
    else:
        chosen = [(model.resolve_language(lang), None)] * len(windows)
    by_language: dict[str | None, list[tuple[int, int]]] = defaultdict(list)
    if not routed:  # its decoder is made, and a missing LM found, even for a file of silence
        by_language[model.resolve_language(lang)] = []
    for window, (language, _) in zip(windows, chosen, strict=True):
        by_language[language].append(window)
    probability = {start: p for (start, _), (_, p) in zip(windows, chosen, strict=True)}
    segments: dict[int, Segment] = {}
    shift = model.frame_shift
    for language, group in by_language.items():
        by_character = language is not None and is_written_without_spaces(language)
        decoder = make_decoder(model.vocabulary(language), by_character, lm, language)
        joiner = "" if by_character else " "
        for start, log_probs in window_log_probs(
            model, samples, group, context, language, batch_size
        ):
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
                segments[start] = Segment(
                    words[0].start, words[-1].end, text, words, None, language, probability[start]
                )
    ordered = [segments[start] for start in sorted(segments)]
    if not routed:
        return Result(_joined(ordered), model.resolve_language(lang), ordered, duration)
    speech: dict[str, float] = defaultdict(float)
    for (start, end), (language, _) in zip(windows, chosen, strict=True):
        speech[language] += end - start
    language = max(speech, key=speech.__getitem__)
    return Result(_joined(ordered), language, ordered, duration, None, round(overall[language], 4))


def _joined(segments: list[Segment]) -> str:
    """The segments' texts, with a space between two unless both are written without spaces."""
    text = ""
    for previous, segment in zip([None, *segments], segments, strict=False):
        glued = previous is None or all(
            one.language is not None and is_written_without_spaces(one.language)
            for one in (previous, segment)
        )
        text += ("" if glued else " ") + segment.text
    return text
