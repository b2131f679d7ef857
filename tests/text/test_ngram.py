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


@pytest.mark.parametrize("min_count", [1, 2, 3])
@pytest.mark.parametrize("context", [(BOS,), (BOS, "t", "h"), ("c", "a"), ("q", "x"), ()])
def test_every_context_is_a_distribution(context, min_count):
    lm = estimate(sentences(), order=4, min_count=min_count)
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


def test_count_cut_offs_leave_out_rare_long_n_grams():
    full, cut = estimate(sentences(), order=4), estimate(sentences(), order=4, min_count=2)
    assert ("c", "a", "t") in cut.probs and ("t", "h", "e", "|") in cut.probs  # seen 3, 4 times
    assert ("d", "o", "g") in cut.probs and ("a", "|", "d") not in cut.probs  # seen 2 times, once
    assert ("a", "|", "d") in full.probs
    assert {gram for gram in full.probs if len(gram) <= 2} == {
        gram for gram in cut.probs if len(gram) <= 2
    }
    assert len(cut.probs) < len(full.probs)
    # what was seen often keeps its probability high
    assert cut.score((BOS, "t", "h"), "e") > math.log10(0.5)


@pytest.mark.parametrize("min_count", [1, 2])
def test_arpa_round_trip_and_kenlm_agree(tmp_path, min_count):
    kenlm = pytest.importorskip("kenlm")
    lm = estimate(sentences(), order=3, min_count=min_count)
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
    with pytest.raises(InputError, match="count must be at least 1"):
        estimate(sentences(), order=3, min_count=0)
    (tmp_path / "broken.arpa").write_text("\\data\\\nngram 1=1\n\n\\2-grams:\n-1.0\tonly\n")
    with pytest.raises(InputError, match=r"broken\.arpa: not a readable ARPA"):
        read_arpa(tmp_path / "broken.arpa")
    (tmp_path / "empty.arpa").write_text("hello\n")
    with pytest.raises(InputError, match=r"empty\.arpa: not an ARPA language model"):
        read_arpa(tmp_path / "empty.arpa")
