"""CTC decoding: best path (greedy) with the time span of every emitted character."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polyspeech.text.vocab import Vocabulary


@dataclass(frozen=True)
class CharSpan:
    """One emitted character: first and last frame (inclusive) and its mean probability."""

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
