import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyspeech.align.viterbi import align, frames_needed
from polyspeech.errors import InputError


def brute_force(log_probs: np.ndarray, tokens: list[int]) -> tuple[list[int], float]:
    """Every valid state path scored; the best, ties to the documented order."""
    frames, size = len(log_probs), 2 * len(tokens) + 1
    labels = [0 if s % 2 == 0 else tokens[s // 2] for s in range(size)]
    best = None
    for moves in itertools.product(range(3), repeat=frames - 1):
        for start in (0, 1)[:size]:
            path = [start]
            for move in moves:
                path.append(path[-1] + move)
            if path[-1] not in (size - 1, size - 2) or path[-1] >= size:
                continue
            if any(  # a skip must jump a blank between two different tokens
                move == 2 and (path[i + 1] % 2 == 0 or labels[path[i + 1]] == labels[path[i]])
                for i, move in enumerate(moves)
            ):
                continue
            score = 0.0
            for t, s in enumerate(path):
                score = score + float(log_probs[t, labels[s]])
            # order: score, then trailing blank first, then the moves read backwards
            key = (-score, 0 if path[-1] == size - 1 else 1, moves[::-1])
            if best is None or key < best[0]:
                best = (key, path, score)
    assert best is not None
    return best[1], best[2]


@st.composite
def cases(draw):
    classes = draw(st.integers(2, 4))
    tokens = draw(st.lists(st.integers(1, classes - 1), min_size=1, max_size=3))
    frames = draw(st.integers(frames_needed(np.array(tokens)), 7))
    # small integer scores make ties common, so the tie rule is exercised
    values = draw(
        st.lists(st.integers(-3, 0), min_size=frames * classes, max_size=frames * classes)
    )
    return np.array(values, np.float32).reshape(frames, classes), tokens


@settings(max_examples=300, deadline=None)
@given(cases())
def test_same_path_and_score_as_brute_force(case):
    log_probs, tokens = case
    expected_path, expected_score = brute_force(log_probs, tokens)
    result = align(log_probs, np.array(tokens))
    assert result.states.tolist() == expected_path
    assert result.score == expected_score


def full_table(log_probs: np.ndarray, tokens: np.ndarray) -> tuple[list[int], float]:
    """The textbook Viterbi with the whole T x S table, ties as documented."""
    frames, size = len(log_probs), 2 * len(tokens) + 1
    labels = np.zeros(size, np.int64)
    labels[1::2] = tokens
    score = np.full((frames, size), -np.inf)
    pointer = np.zeros((frames, size), np.int64)
    score[0, :2] = log_probs[0, labels[:2]]
    for t in range(1, frames):
        for s in range(size):
            options = [score[t - 1, s], score[t - 1, s - 1] if s >= 1 else -np.inf]
            can_skip = s % 2 == 1 and s >= 3 and labels[s] != labels[s - 2]
            options.append(score[t - 1, s - 2] if can_skip else -np.inf)
            pointer[t, s] = int(np.argmax(options))  # first maximum: stay, one, two
            score[t, s] = options[pointer[t, s]] + log_probs[t, labels[s]]
    end = size - 1 if size == 1 or score[-1, -1] >= score[-1, -2] else size - 2
    path = [end]
    for t in range(frames - 1, 0, -1):
        path.append(path[-1] - pointer[t, path[-1]])
    return path[::-1], float(score[-1, end])


@pytest.mark.parametrize("seed", range(4))
def test_long_random_case_matches_the_full_table(seed):
    rng = np.random.default_rng(seed)
    frames, classes = 400, 6
    logits = rng.normal(size=(frames, classes))
    log_probs = (logits - np.log(np.exp(logits).sum(1, keepdims=True))).astype(np.float32)
    tokens = rng.integers(1, classes, size=int(rng.integers(1, 150)))
    result = align(log_probs, tokens)  # blocks of about (4 T S)^(1/3) frames, so many blocks
    path, score = full_table(log_probs, tokens)
    assert result.states.tolist() == path
    assert result.score == score


def test_repeated_tokens_need_a_blank_between():
    log_probs = np.log(np.full((3, 2), 0.5, np.float32))
    result = align(log_probs, np.array([1, 1]))
    assert result.states.tolist() == [1, 2, 3]
    with pytest.raises(InputError, match="2 tokens need at least 3 frames, the audio has 2"):
        align(log_probs[:2], np.array([1, 1]))


def test_a_transcript_that_fills_every_frame():
    log_probs = np.log(np.full((3, 4), 0.25, np.float32))
    result = align(log_probs, np.array([1, 2, 3]))
    assert result.states.tolist() == [1, 3, 5]
    assert result.token_frames().tolist() == [[0, 1], [1, 2], [2, 3]]


def test_too_long_and_empty():
    with pytest.raises(InputError, match="3 tokens need at least 3 frames, the audio has 2"):
        align(np.zeros((2, 4), np.float32), np.array([1, 2, 3]))
    empty = align(np.zeros((0, 4), np.float32), np.array([], np.int64))
    assert empty.states.tolist() == [] and empty.score == 0.0
    blank_only = align(np.log(np.full((2, 3), 0.5, np.float32)), np.array([], np.int64))
    assert blank_only.states.tolist() == [0, 0] and blank_only.token_frames().shape == (0, 2)
    with pytest.raises(InputError, match="blank"):
        align(np.zeros((4, 3), np.float32), np.array([1, 0]))
