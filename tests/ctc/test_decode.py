import numpy as np

from polyspeech.ctc.decode import greedy_decode, spans_to_text
from polyspeech.text.vocab import Vocabulary

VOCAB = Vocabulary.from_texts(["ab"])  # <pad> <s> </s> <unk> | a b


def path_log_probs(path: list[str]) -> np.ndarray:
    """Log-probabilities whose best path is ``path`` (tokens by name, "-" the blank)."""
    index = VOCAB.mapping()
    probs = np.full((len(path), len(VOCAB)), 0.01)
    for frame, token in enumerate(path):
        probs[frame, index["<pad>" if token == "-" else token]] = 0.9
    return np.log(probs / probs.sum(axis=1, keepdims=True))


def test_repeats_merge_and_a_blank_separates_them():
    spans = greedy_decode(path_log_probs(["a", "a", "-", "a", "b", "b", "|", "b"]), VOCAB)
    assert [(s.text, s.start_frame, s.end_frame) for s in spans] == [
        ("a", 0, 1),
        ("a", 3, 3),
        ("b", 4, 5),
        (" ", 6, 6),
        ("b", 7, 7),
    ]
    assert spans_to_text(spans) == "aab b"
    assert 0.8 < spans[0].score < 1.0


def test_all_blank_is_empty():
    assert greedy_decode(path_log_probs(["-", "-", "-"]), VOCAB) == []
    assert spans_to_text([]) == ""
