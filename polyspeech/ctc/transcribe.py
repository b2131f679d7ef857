"""Long-form CTC transcription in pieces of at most 30 s, batched: memory is bounded by the
piece size and the batch, whatever the length of the file.

With VAD (the default), the pieces are silero-vad's speech regions, and each becomes a segment.
Without, the pieces are fixed 30 s windows run with 2 s of context on both sides; only the frames
of a window's own span are kept, so the stitched log-probabilities match one pass over the whole
file except within reach of the context edges.

Language ``auto`` (the default for a model of several languages) has a language-ID model name
each piece's language among the recogniser's, and routes the piece to that adapter, so a file
that switches language is transcribed in each of its languages.

A model emits a sound's character before the sound (the default model, 40 ms frames: in French
one to four frames before), so speech that starts at the file's first sample has no frame for
its first character and often loses it. A piece that starts there on speech is therefore heard
after :data:`LEAD_IN` of white noise at the level of its own quietest 20 ms, and those frames
are decoded with it (times before the file's start count as its start). Measured in
recipes/default_ctc/README.md, "A lead-in for speech at the file's first sample".
"""

from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from polyspeech.audio import SAMPLE_RATE
from polyspeech.audio.vad import pieces
from polyspeech.ctc.decode import make_decoder
from polyspeech.errors import InputError
from polyspeech.lid.model import LidModel
from polyspeech.options import AUTO
from polyspeech.results import Result, Segment, Word
from polyspeech.text.languages import is_written_without_spaces, join_words, model_language

if TYPE_CHECKING:  # in annotations only: CtcModel's transcribe methods call this module
    from polyspeech.ctc.model import CtcModel

WINDOW = 30.0  # seconds of audio a window keeps
CONTEXT = 2.0  # seconds of audio either side, run and then cut off
SHORTEST_IDENTIFIED = 1.0  # seconds: a shorter piece takes the language of the whole file
LEAD_IN = 0.3  # seconds (to the nearest frame) heard before a piece that starts on speech
QUIET = 0.02  # seconds: the span whose lowest RMS sets the lead-in's level
SPEECH_ABOVE_FLOOR = 10.0  # dB: a clip whose first QUIET seconds are louder starts on speech


def lead_in(clip: np.ndarray, length: int) -> np.ndarray:
    """For a clip that starts on speech (its first :data:`QUIET` seconds more than
    :data:`SPEECH_ABOVE_FLOOR` dB above its quietest), ``length`` samples of white noise (always
    the same draw) at the RMS of that quietest span; for any other clip, no samples."""
    span = int(QUIET * SAMPLE_RATE)
    frames = clip[: len(clip) // span * span].reshape(-1, span).astype(np.float64)
    rms = np.sqrt((frames**2).mean(axis=1))
    if not len(rms) or rms[0] <= rms.min() * 10 ** (SPEECH_ABOVE_FLOOR / 20):
        return np.zeros(0, np.float32)
    return (np.random.default_rng(0).standard_normal(length) * rms.min()).astype(np.float32)


def identify_pieces(
    model: CtcModel,
    identifier: LidModel,
    samples: np.ndarray,
    windows: list[tuple[int, int]],
) -> tuple[list[tuple[str, float]], dict[str, float]]:
    """Each piece's language and its probability, and the file's probabilities (the pieces'
    weighted by their durations); both over the languages the recogniser and the LID model have
    in common, renormalised. A piece under :data:`SHORTEST_IDENTIFIED` takes the file's choice."""
    # the recogniser's key of each label the LID model has (LID's cmn is mms-1b-all's
    # cmn-script_simplified); a label with several script keys here is left out
    pairs = {}
    for column, label in enumerate(identifier.labels):
        with contextlib.suppress(InputError):
            lang = model_language(label, model.languages, str(model.folder))
            if lang is not None:
                pairs.setdefault(lang, column)
    known = list(pairs)
    if not known:
        raise InputError(
            f"{identifier.folder}: this language-ID model knows none of the languages of "
            f"{model.folder} ({', '.join(model.languages)}); choose one with --lang"
        )
    if not windows:
        return [], {}
    columns = list(pairs.values())
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
    runs: list[tuple[np.ndarray, int, int]],
    context: int,
    langs: list[str | None],
    batch_size: int,
    lead: bool = False,
) -> Iterator[tuple[int, np.ndarray]]:
    """For each piece (samples, start, end) in its language, the log-probabilities of its own
    frames: it runs with ``context`` samples either side, whose frames are cut off. With
    ``lead``, a piece at its file's start is heard after its :func:`lead_in`, whose frames are
    kept (the first sound is often emitted there): each piece comes as (frames before its
    start, log-probabilities). Pieces may come from different files and languages; they run in
    batches of ``batch_size``."""
    lead_frames = round(LEAD_IN / model.frame_shift)  # a whole number of frames
    lead_samples = round(lead_frames * model.frame_shift * SAMPLE_RATE)
    for first in range(0, len(runs), batch_size):
        group = runs[first : first + batch_size]
        clips = [samples[max(0, s - context) : e + context] for samples, s, e in group]
        leads = [
            lead_in(clip, lead_samples) if lead and start == 0 else np.zeros(0, np.float32)
            for clip, (_, start, _) in zip(clips, group, strict=True)
        ]
        clips = [np.concatenate(pair) for pair in zip(leads, clips, strict=True)]
        found = model.log_probs(clips, langs[first : first + batch_size])
        for (_, start, end), added, log_probs in zip(group, leads, found, strict=True):
            before = lead_frames if len(added) else 0
            first_frame = round((start - max(0, start - context)) / SAMPLE_RATE / model.frame_shift)
            last_frame = (
                before + first_frame + round((end - start) / SAMPLE_RATE / model.frame_shift)
            )
            yield before, log_probs[first_frame:last_frame]


def window_count(samples: np.ndarray) -> int:
    """How many windows :func:`stitched_log_probs` reads ``samples`` in."""
    return len(pieces([samples], WINDOW, False)[0])


def stitched_log_probs(
    model: CtcModel,
    samples: np.ndarray,
    lang: str | None,
    batch_size: int = 4,
    columns: np.ndarray | None = None,
    with_best: bool = False,
    on_window: Callable[[], None] | None = None,
) -> np.ndarray:
    """Log-probabilities of a whole file (frames x classes), from 30 s windows with context.

    ``columns`` keeps only those classes, so a large vocabulary costs no more than it needs;
    ``with_best`` appends one more column: each frame's best log-probability over all classes.
    ``on_window`` is called after each window (:func:`window_count` of them), for a progress
    bar.
    """
    kept_pieces = []
    windows = [(samples, start, end) for start, end in pieces([samples], WINDOW, False)[0]]
    context = int(CONTEXT * SAMPLE_RATE)
    langs = [lang] * len(windows)
    for _, log_probs in window_log_probs(model, windows, context, langs, batch_size):
        kept = log_probs if columns is None else log_probs[:, columns]
        if with_best:
            kept = np.concatenate([kept, log_probs.max(axis=1, keepdims=True)], axis=1)
        kept_pieces.append(kept)
        if on_window is not None:
            on_window()
    width = len(model.vocabulary(lang)) if columns is None else len(columns)
    width += int(with_best)
    if not kept_pieces:
        return np.zeros((0, width), np.float32)
    return np.concatenate(kept_pieces)


def transcribe_many(
    model: CtcModel,
    files: list[np.ndarray],
    langs: list[str | None],
    batch_size: int = 4,
    vad: bool = True,
    lm: str | os.PathLike | None = None,
    identifier: LidModel | None = None,
    vad_threshold: float = 0.5,
    beam_size: int | None = None,
) -> list[Result]:
    """Transcribe several files (16 kHz mono samples, any length) together: their pieces run
    in shared batches, whatever their files and languages, longest first. One segment per
    piece with speech, with its language (and, when identified, that language's probability).

    A file in language ``auto`` has ``identifier`` name each of its pieces' languages
    (:func:`identify_pieces`); its result's language is the one of the most speech, with the
    file's probability of it. Other files have every piece in their ``lang``.
    ``vad_threshold`` is silero's speech probability above which VAD hears speech (see
    :func:`polyspeech.audio.vad.speech_regions`); one outside (0, 1) is an :class:`InputError`.
    ``beam_size``: the width of an LM's beam search (None: the LM's own setting).
    """
    context = 0 if vad else int(CONTEXT * SAMPLE_RATE)
    plans = []  # per file: its windows, each with its language and that language's probability
    decoders = {}  # by language, made before any audio runs (a missing LM is found first)
    runs: list[tuple[int, int, int, str | None, float | None]] = []
    for index, (samples, lang, windows) in enumerate(
        zip(files, langs, pieces(files, WINDOW, vad, threshold=vad_threshold), strict=True)
    ):
        if lang == AUTO:
            if identifier is None:
                raise InputError("language auto needs a language-ID model")
            chosen, overall = identify_pieces(model, identifier, samples, windows)
        else:
            named = model.resolve_language(lang)
            chosen, overall = [(named, None)] * len(windows), None
            if named not in decoders:  # even for a file of silence
                decoders[named] = _decoder(model, named, lm, beam_size)
        plans.append((windows, chosen, overall))
        for (start, end), (language, probability) in zip(windows, chosen, strict=True):
            if language not in decoders:
                decoders[language] = _decoder(model, language, lm, beam_size)
            runs.append((index, start, end, language, probability))
    runs.sort(key=lambda run: run[1] - run[2])  # longest first: batches of similar lengths
    segments: list[dict[int, Segment]] = [{} for _ in files]
    shift = model.frame_shift
    found = window_log_probs(
        model, [(files[i], s, e) for i, s, e, _, _ in runs], context,
        [language for *_, language, _ in runs], batch_size, lead=True,
    )  # fmt: skip
    for (index, start, _, language, probability), (before, log_probs) in zip(
        runs, found, strict=True
    ):
        offset = start / SAMPLE_RATE - before * shift  # the time of the first frame
        words = [
            Word(
                span.text,
                round(max(0.0, offset + span.start_frame * shift), 3),
                round(max(shift, offset + (span.end_frame + 1) * shift), 3),
                round(span.score, 4),
            )
            for span in decoders[language].words(log_probs)
        ]
        if words:
            text = join_words((word.word for word in words), language)
            segments[index][start] = Segment(
                words[0].start, words[-1].end, text, words, None, language, probability
            )
    results = []
    for samples, lang, (windows, chosen, overall), found in zip(
        files, langs, plans, segments, strict=True
    ):
        ordered = [found[start] for start in sorted(found)]
        duration = round(len(samples) / SAMPLE_RATE, 3)
        if lang != AUTO:
            results.append(
                Result(_joined(ordered), model.resolve_language(lang), ordered, duration)
            )
            continue
        speech: dict[str, float] = defaultdict(float)
        for (start, end), (language, _) in zip(windows, chosen, strict=True):
            speech[language] += end - start
        language = max(speech, key=speech.__getitem__) if speech else None
        probability = round(overall[language], 4) if speech else None
        results.append(Result(_joined(ordered), language, ordered, duration, None, probability))
    return results


def _decoder(
    model: CtcModel, language: str | None, lm: str | os.PathLike | None, beam_size: int | None
):
    by_character = language is not None and is_written_without_spaces(language)
    return make_decoder(model.vocabulary(language), by_character, lm, language, beam_size)


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
