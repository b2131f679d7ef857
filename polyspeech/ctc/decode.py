"""CTC decoding: best path (greedy), or beam search with a KenLM n-gram (pyctcdecode), both
giving the frame span of every word."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyspeech.errors import DependencyError, InputError
from polyspeech.text.vocab import PAD, WORD_DELIMITER, Vocabulary


@dataclass(frozen=True)
class CharSpan:
    """One emitted character: first and last frame (inclusive) and its mean probability."""

    text: str
    start_frame: int
    end_frame: int
    score: float


@dataclass(frozen=True)
class WordSpan:
    """One word: first and last frame (inclusive) and the mean best-path probability."""

    text: str
    start_frame: int
    end_frame: int
    score: float


def greedy_decode(log_probs: np.ndarray, vocabulary: Vocabulary) -> list[CharSpan]:
    """Best path through (frames, vocab) log-probabilities: argmax, merge repeats, drop blanks.

    Spaces (the word delimiter) are kept as characters ``" "``; specials are dropped.
    """
    best = log_probs.argmax(axis=-1)
    best_scores = np.exp(log_probs[np.arange(len(best)), best])
    spans: list[CharSpan] = []
    start = 0
    for frame in range(1, len(best) + 1):
        if frame < len(best) and best[frame] == best[start]:
            continue
        token = int(best[start])
        text = vocabulary.token_text(token) if token != vocabulary.blank else ""
        if text:
            score = float(best_scores[start:frame].mean())
            spans.append(CharSpan(text, start, frame - 1, score))
        start = frame
    return spans


def spans_to_text(spans: list[CharSpan]) -> str:
    """The decoded text with single spaces and no space at either end."""
    return " ".join("".join(span.text for span in spans).split())


def group_words(spans: list[CharSpan], by_character: bool) -> list[WordSpan]:
    """Characters into words at spaces; with ``by_character`` (Chinese, ...) each is a word."""
    words: list[WordSpan] = []
    current: list[CharSpan] = []
    for span in [*spans, None]:
        if span is not None and span.text != " " and not by_character:
            current.append(span)
            continue
        if by_character and span is not None and span.text != " ":
            current = [span]
        if current:
            words.append(
                WordSpan(
                    "".join(s.text for s in current),
                    current[0].start_frame,
                    current[-1].end_frame,
                    float(np.mean([s.score for s in current])),
                )
            )
        current = []
    return words


class GreedyDecoder:
    """Best-path words."""

    def __init__(self, vocabulary: Vocabulary, by_character: bool) -> None:
        self.vocabulary = vocabulary
        self.by_character = by_character

    def words(self, log_probs: np.ndarray) -> list[WordSpan]:
        return group_words(greedy_decode(log_probs, self.vocabulary), self.by_character)


class LmBeamDecoder:
    """Beam search with a KenLM n-gram (ARPA or binary) over words, through pyctcdecode.

    ``alpha`` weighs the LM, ``beta`` rewards each word. The LM scores space-separated words,
    so it helps languages written with spaces.
    """

    def __init__(
        self,
        vocabulary: Vocabulary,
        lm_path: str | os.PathLike,
        alpha: float = 0.5,
        beta: float = 1.0,
        beam_width: int = 64,
    ) -> None:
        try:
            from pyctcdecode import build_ctcdecoder
        except ImportError:
            raise DependencyError(
                "beam search with an LM needs pyctcdecode and kenlm: pip install 'polyspeech[lm]'"
            ) from None
        if not Path(lm_path).is_file():
            raise InputError(f"{lm_path}: language model file not found")
        labels = [
            "" if token == PAD else " " if token == WORD_DELIMITER else token
            for token in vocabulary.tokens
        ]
        try:
            self._decoder = build_ctcdecoder(labels, str(lm_path), alpha=alpha, beta=beta)
        except (OSError, RuntimeError, ValueError) as error:
            raise InputError(f"{lm_path}: cannot load the language model ({error})") from None
        self.beam_width = beam_width

    def words(self, log_probs: np.ndarray) -> list[WordSpan]:
        # a beam is (text, lm state, [(word, (first frame, end frame))], logit score, score)
        word_frames = self._decoder.decode_beams(log_probs, beam_width=self.beam_width)[0][2]
        best = np.exp(log_probs.max(axis=-1))
        return [
            WordSpan(word, start, end - 1, float(best[start:end].mean()))
            for word, (start, end) in word_frames
            if word.strip()
        ]
