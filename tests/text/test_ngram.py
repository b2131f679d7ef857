import gzip
import math

import pytest

from polyspeech.errors import InputError
from polyspeech.text.ngram import estimate, read_arpa, sentence_tokens, write_arpa
from polyspeech.text.vocab import BOS, EOS, UNK

TEXTS = ["the cat sat", "the cat ran", "a dog sat on the mat", "the dog ran to the cat"]


def sentences():
    return [sentence_tokens(text) for text in TEXTS]


def vocabulary(lm):
    return [gram[0] for gram in lm.probs if len(gram) == 1 and gram[0] != BOS]


@pytest.mark.parametrize("context", [(BOS,), (BOS, "t", "h"), ("c", "a"), ("q", "x"), ()])
def test_every_context_is_a_distribution(context):
    lm = estimate(sentences(), order=4)
    total = sum(10 ** lm.score(context, token) for token in vocabulary(lm))
    assert total == pytest.approx(1.0, abs=1e-6)
    assert UNK in vocabulary(lm) and EOS in vocabulary(lm)


def test_seen_continuations_beat_unseen_ones():
    lm = estimate(sentences(), order=4)
    assert lm.score((BOS, "t", "h"), "e") > math.log10(0.5)
    assert lm.score(("c", "a"), "t") > lm.score(("c", "a"), "g")
    assert lm.sentence_score(sentence_tokens("the cat")) > lm.sentence_score(
        sentence_tokens("eht tac")
    )


def test_arpa_round_trip_and_kenlm_agree(tmp_path):
    kenlm = pytest.importorskip("kenlm")
    lm = estimate(sentences(), order=3)
    write_arpa(lm, tmp_path / "lm.arpa.gz")
    with gzip.open(tmp_path / "lm.arpa.gz", "rt", encoding="utf-8") as stream:
        (tmp_path / "lm.arpa").write_text(stream.read(), encoding="utf-8")
    back = read_arpa(tmp_path / "lm.arpa.gz")
    reference = kenlm.Model(str(tmp_path / "lm.arpa"))
    for text in ["the cat sat", "a mat ran", "zz top"]:
        tokens = sentence_tokens(text)
        ours = back.sentence_score(tokens)
        assert ours == pytest.approx(lm.sentence_score(tokens), abs=1e-4)
        assert ours == pytest.approx(
            reference.score(" ".join(tokens), bos=True, eos=True), abs=1e-4
        )
    assert not list(tmp_path.glob("*.partial"))


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="no text"):
        estimate([], order=3)
    with pytest.raises(InputError, match="at least 1"):
        estimate(sentences(), order=0)
    (tmp_path / "broken.arpa").write_text("\\data\\\nngram 1=1\n\n\\2-grams:\n-1.0\tonly\n")
    with pytest.raises(InputError, match=r"broken\.arpa: not a readable ARPA"):
        read_arpa(tmp_path / "broken.arpa")
    (tmp_path / "empty.arpa").write_text("hello\n")
    with pytest.raises(InputError, match=r"empty\.arpa: not an ARPA language model"):
        read_arpa(tmp_path / "empty.arpa")
