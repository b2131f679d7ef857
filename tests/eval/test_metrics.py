import pytest

from polyspeech.errors import InputError
from polyspeech.eval.metrics import ErrorRate, bleu, cer, chrf, error_rate, mer, wer


def test_wer_by_hand():
    # "the cat sat on the mat" -> "the cat sit on mat": sat->sit (S), the (D): 2 / 6
    assert wer("the cat sat on the mat", "the cat sit on mat") == ErrorRate(2 / 6, 1, 1, 0, 6)


def test_wer_sums_errors_over_the_corpus():
    # pair 1: 1 insertion over 2 words; pair 2: 1 substitution over 3 words -> 2 / 5
    result = wer(["a b", "c d e"], ["a b x", "c y e"])
    assert (result.substitutions, result.deletions, result.insertions) == (1, 0, 1)
    assert result.rate == pytest.approx(2 / 5)


def test_cer_ignores_spaces():
    # "abcd" vs "abd": one deletion over 4 characters; spacing differences are not errors
    assert cer("abcd", "abd").rate == pytest.approx(0.25)
    assert cer("ab cd", "abcd").rate == 0.0


def test_empty_reference_and_hypothesis():
    assert wer("", "").rate == 0.0
    both_empty = wer(["", "a"], ["", "a"])
    assert both_empty.rate == 0.0 and both_empty.reference_length == 1
    # an empty reference with words in the hypothesis: every word inserted, rate 1.0
    assert wer("", "x y") == ErrorRate(1.0, 0, 0, 2, 0)
    assert wer("a b", "") == ErrorRate(1.0, 0, 2, 0, 2)
    assert cer("", "") == ErrorRate(0.0, 0, 0, 0, 0)


def test_mer_tokens_are_han_characters_and_latin_words():
    # ref tokens: 我 用 iphone 手 机 (5); hyp: 我 用 iphone 电 话 -> 2 substitutions
    assert mer("\u6211\u7528iphone\u624b\u673a", "\u6211\u7528 iphone \u7535\u8bdd") == ErrorRate(
        0.4, 2, 0, 0, 5
    )
    # one wrong English word counts once, not once per letter
    assert mer("\u6253\u5f00 window", "\u6253\u5f00 widow").rate == pytest.approx(1 / 3)


def test_error_rate_picks_the_unit_by_language():
    assert error_rate("ab cd", "ab ce", "eng").rate == 0.5  # words
    assert error_rate("\u4f60\u597d", "\u4f60\u4eec", "zh").rate == 0.5  # characters
    assert error_rate("\u0e2a\u0e27\u0e31", "\u0e2a\u0e27\u0e32", "tha").rate == pytest.approx(
        1 / 3
    )


def test_pairs_must_match():
    with pytest.raises(InputError, match="2 references but 1 hypotheses"):
        wer(["a", "b"], ["a"])
    with pytest.raises(InputError, match="no references"):
        bleu([], [])


def test_bleu_by_hand():
    assert bleu("the cat is on the mat", "the cat is on the mat") == pytest.approx(100.0)
    assert bleu("the cat is on the mat", "") == 0.0
    # 7 words, one substituted: n-gram precisions 6/7, 4/6, 2/5, 1/4, no brevity penalty
    expected = 100 * ((6 / 7) * (4 / 6) * (2 / 5) * (1 / 4)) ** 0.25
    score = bleu("the cat sat on the mat today", "the cat sat on a mat today")
    assert score == pytest.approx(expected, abs=1e-6)


def test_bleu_tokenises_chinese_by_character():
    # without Chinese tokenisation the whole sentence would be one token and score 0
    assert (
        bleu("\u6211\u559c\u6b22\u5403\u82f9\u679c", "\u6211\u559c\u6b22\u5403\u9999\u8549", "cmn")
        > 30
    )


def test_chrf():
    assert chrf("hello", "hello") == pytest.approx(100.0)
    assert chrf("hello", "") == 0.0
    assert 0 < chrf("hello world", "hello word") < 100
