"""Exact CTC forced alignment (Viterbi) in memory that does not grow with frames x tokens.

Frames ``t = 0..T-1``; tokens ``y_0..y_{L-1}``; states ``s = 0..2L``: even states are blanks,
state ``2i + 1`` is token ``i``. A path starts in state 0 or 1, ends in state ``2L`` or
``2L - 1``, and from one frame to the next stays, moves one state on, or skips a blank between
two different tokens (two states on). Its score is the sum of its states' log-probabilities.

Ties are broken the same way everywhere (tested against a brute-force search): at the last
frame the trailing blank wins over the last token, and going back from a state, staying wins
over one state back, which wins over two. Equivalently: of the best-scoring paths, the one whose
moves, read from the last frame backwards, come first in that order.

A full table holds T x S cells (torchaudio: a byte each, 15 GB for an hour). Here the forward
pass keeps one row of scores and stores it every ``k`` frames (``T/k`` rows). The back-trace
then goes block by block, the last block first: from the block's stored row it recomputes only
the states that can still reach the block's known end state (a band that widens by two states
per frame back) and keeps their back-pointers, a byte each, for that block alone. With
``k = (4 T S)^(1/3)`` the stored rows (T/k x S scores) and one block's band (about k x 2k bytes)
take similar memory: an hour of 20 ms frames with 43,000 tokens needs about 100 MB. The forward
pass costs T x S steps (fewer early on, where states cannot be reached yet), the back-trace
about 2 k T more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from polyspeech.errors import InputError

_STAY, _ONE, _TWO = 0, 1, 2


@dataclass(frozen=True)
class Alignment:
    """The best path: ``states[t]`` is the state at frame ``t``; ``score`` its log-probability."""

    states: np.ndarray  # int32, one per frame
    score: float

    def token_frames(self) -> np.ndarray:
        """Per token, its first frame and one past its last frame: an array (tokens, 2)."""
        frames = np.flatnonzero(self.states % 2 == 1)
        tokens = self.states[frames] // 2  # every token's state is visited, in order
        count = int(tokens[-1]) + 1 if len(tokens) else 0
        starts = np.searchsorted(tokens, np.arange(count))
        ends = np.searchsorted(tokens, np.arange(count), side="right")
        return np.stack([frames[starts], frames[ends - 1] + 1], axis=1)


def frames_needed(tokens: np.ndarray) -> int:
    """The fewest frames that can hold ``tokens``: one each, plus a blank between repeats."""
    tokens = np.asarray(tokens)
    return int(len(tokens) + np.count_nonzero(tokens[1:] == tokens[:-1]))


def align(log_probs: np.ndarray, tokens: np.ndarray, blank: int = 0) -> Alignment:
    """The best CTC path of ``tokens`` through ``log_probs`` (frames x classes)."""
    log_probs = np.ascontiguousarray(log_probs, dtype=np.float32)
    tokens = np.asarray(tokens, dtype=np.int64)
    frames = log_probs.shape[0]
    if log_probs.ndim != 2:
        raise InputError(f"log-probabilities must be frames x classes, not {log_probs.shape}")
    if len(tokens) and (tokens.min() < 0 or tokens.max() >= log_probs.shape[1]):
        raise InputError(f"token ids must lie in 0..{log_probs.shape[1] - 1}")
    if np.any(tokens == blank):
        raise InputError(f"the transcript holds the blank ({blank}) as a token")
    need = frames_needed(tokens)
    if need > frames:
        raise InputError(
            f"transcript too long for the audio: {len(tokens)} tokens need at least {need} "
            f"frames, the audio has {frames}"
        )
    if frames == 0:
        return Alignment(np.zeros(0, np.int32), 0.0)
    states = np.full(2 * len(tokens) + 1, blank, dtype=np.int64)
    states[1::2] = tokens
    skip = np.zeros(len(states), dtype=np.bool_)
    skip[3::2] = tokens[1:] != tokens[:-1]
    block = max(1, math.ceil((4 * frames * len(states)) ** (1 / 3)))
    path, score = _viterbi(log_probs, states, skip, block)
    return Alignment(path, float(score))


@numba.njit(cache=True)
def _forward(log_probs, tokens, skip, blank, block):
    """Scores of the last frame, and of every ``block``-th frame, per state.

    Blank states and token states are kept apart so the inner loops have no branches (they
    vectorise); ties do not matter here, only in the back-trace.
    """
    frames, count = log_probs.shape[0], tokens.shape[0]
    penalty = np.where(skip[1::2], 0.0, -np.inf)  # per token: may it be entered two states on
    blanks, new_blanks = np.full(count + 1, -np.inf), np.full(count + 1, -np.inf)
    words, new_words = np.full(count, -np.inf), np.full(count, -np.inf)
    stored = np.empty(((frames - 1) // block + 1, 2 * count + 1), np.float64)
    blanks[0] = log_probs[0, blank]
    if count:
        words[0] = log_probs[0, tokens[0]]
    stored[0, 0::2], stored[0, 1::2] = blanks, words
    for t in range(1, frames):
        row = log_probs[t]
        reach = min(count, t + 1)  # states beyond 2t + 1 cannot be reached yet: still -inf
        new_blanks[0] = blanks[0] + row[blank]
        for i in range(1, min(count, t) + 1):
            new_blanks[i] = max(blanks[i], words[i - 1]) + row[blank]
        if count:
            new_words[0] = max(words[0], blanks[0]) + row[tokens[0]]
        for i in range(1, reach):
            best = max(max(words[i], blanks[i]), words[i - 1] + penalty[i])
            new_words[i] = best + row[tokens[i]]
        blanks, new_blanks = new_blanks, blanks
        words, new_words = new_words, words
        if t % block == 0:
            stored[t // block, 0::2], stored[t // block, 1::2] = blanks, words
    last = np.empty(2 * count + 1, np.float64)
    last[0::2], last[1::2] = blanks, words
    return stored, last


@numba.njit(cache=True)
def _viterbi(log_probs, states, skip, block):
    frames, size = log_probs.shape[0], states.shape[0]
    stored, previous = _forward(log_probs, states[1::2].copy(), skip, states[0], block)
    current = np.empty(size)
    end = size - 1
    if size >= 2 and previous[size - 2] > previous[size - 1]:
        end = size - 2
    score = previous[end]

    path = np.empty(frames, np.int32)
    path[frames - 1] = end
    last = frames - 1
    while last > 0:
        first = (last - 1) // block * block  # the stored frame at or before last - 1
        steps = last - first
        pointers = np.zeros((steps, 2 * steps + 1), np.uint8)
        low = max(0, end - 2 * steps)
        previous[low : end + 1] = stored[first // block, low : end + 1]
        for j in range(1, steps + 1):
            # the band: states that can still reach ``end``; what they read (s - 1, s - 2) lies
            # in the band of the frame before, so nothing outside it is ever read
            low = max(0, end - 2 * (steps - j))
            for s in range(low, end + 1):
                best, move = previous[s], _STAY
                if s >= 1 and previous[s - 1] > best:
                    best, move = previous[s - 1], _ONE
                if skip[s] and previous[s - 2] > best:
                    best, move = previous[s - 2], _TWO
                current[s] = best + log_probs[first + j, states[s]]
                pointers[j - 1, s - (end - 2 * steps)] = move
            previous, current = current, previous
        state = end
        for j in range(steps, 0, -1):
            state -= pointers[j - 1, state - (end - 2 * steps)]
            path[first + j - 1] = state
        end, last = state, first
    return path, score
