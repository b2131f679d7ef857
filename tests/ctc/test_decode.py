import numpy as np
import pytest

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


ARPA = """\\data\\
ngram 1=5
ngram 2=2

\\1-grams:
-1.0\t<s>\t0
-1.0\t</s>
-1.0\t<unk>
-0.2\tcat\t0
-4.0\tbat\t0

\\2-grams:
-0.1\t<s> cat
-4.0\t<s> bat

\\end\\
"""


def bat_or_cat() -> tuple[Vocabulary, np.ndarray]:
    """Audio that sounds like "bat" or "cat", "b" slightly ahead."""
    vocab = Vocabulary.from_texts(["bat cat"])
    index = vocab.mapping()
    frames = [{"b": 0.5, "c": 0.45}, {"a": 0.95}, {"<pad>": 0.95}, {"t": 0.95}, {"<pad>": 0.95}]
    probs = np.full((len(frames), len(vocab)), 1e-3)
    for row, frame in enumerate(frames):
        for token, p in frame.items():
            probs[row, index[token]] = p
    return vocab, np.log(probs / probs.sum(axis=1, keepdims=True))


def test_lm_beam_search_prefers_the_likely_word(tmp_path):
    from polyspeech.ctc.decode import GreedyDecoder, LmBeamDecoder

    vocab, log_probs = bat_or_cat()
    assert [w.text for w in GreedyDecoder(vocab, False).words(log_probs)] == ["bat"]
    (tmp_path / "lm.arpa").write_text(ARPA)
    (word,) = LmBeamDecoder(vocab, tmp_path / "lm.arpa", alpha=1.0, beta=0.0).words(log_probs)
    assert (word.text, word.start_frame, word.end_frame) == ("cat", 0, 3)


@pytest.mark.parametrize("name", ["words.arpa", "words.arpa.gz"])
def test_word_lm_knows_its_words_plain_or_compressed(tmp_path, name):
    """With a beam of one, "b" (the louder) is kept over "c" unless the decoder knows that only
    "c" begins a word of the LM: pyctcdecode reads the words itself only from a plain .arpa."""
    from polyspeech.ctc.decode import LmBeamDecoder
    from polyspeech.text.ngram import arpa_words, estimate, write_arpa

    path = tmp_path / name
    write_arpa(estimate([["cat"]] * 5, order=2), path)  # a word LM that knows only "cat"
    assert arpa_words(path) == ["cat"]
    vocab, log_probs = bat_or_cat()
    decoder = LmBeamDecoder(vocab, path, alpha=1.0, beta=0.0, beam_width=1)
    assert [w.text for w in decoder.words(log_probs)] == ["cat"]


def test_an_arpa_file_without_unigrams(tmp_path):
    from polyspeech.ctc.decode import make_decoder
    from polyspeech.errors import InputError

    (tmp_path / "eng.arpa").write_text("\\data\\\nngram 1=0\n\\end\\\n")
    with pytest.raises(InputError, match=r"eng\.arpa: not an ARPA language model"):
        make_decoder(VOCAB, False, tmp_path, "eng")


def test_missing_lm_file(tmp_path):
    from polyspeech.ctc.decode import LmBeamDecoder
    from polyspeech.errors import InputError

    with pytest.raises(InputError, match="language model file not found"):
        LmBeamDecoder(VOCAB, tmp_path / "none.arpa")


def char_lm_case(tmp_path):
    """:func:`bat_or_cat`, and a character LM that has only ever seen "cat"."""
    from polyspeech.text.ngram import estimate, sentence_tokens, write_arpa

    vocab, log_probs = bat_or_cat()
    write_arpa(estimate([sentence_tokens("cat")] * 5, order=3), tmp_path / "eng.arpa.gz")
    return vocab, log_probs


def test_character_lm_beam_search_prefers_the_likely_spelling(tmp_path):
    from polyspeech.ctc.decode import GreedyDecoder, make_decoder

    vocab, log_probs = char_lm_case(tmp_path)
    assert [w.text for w in GreedyDecoder(vocab, False).words(log_probs)] == ["bat"]
    decoder = make_decoder(vocab, False, tmp_path, "eng")  # a folder: <lang>.arpa.gz
    (word,) = decoder.words(log_probs)
    assert (word.text, word.start_frame, word.end_frame) == ("cat", 0, 3)
    weak = make_decoder(vocab, False, tmp_path / "eng.arpa.gz", "eng")
    weak.alpha = 0.01
    assert [w.text for w in weak.words(log_probs)] == ["bat"]  # the audio decides again


def test_character_lm_beam_search_matches_greedy_on_a_clear_path():
    from polyspeech.ctc.decode import CharLmBeamDecoder
    from polyspeech.text.ngram import estimate, sentence_tokens

    lm = estimate([sentence_tokens("ab ba")], order=2)
    path = ["a", "a", "-", "a", "b", "|", "b", "-", "b", "a"]
    decoder = CharLmBeamDecoder(VOCAB, lm, by_character=False, alpha=0.0, beta=0.0)
    assert [w.text for w in decoder.words(path_log_probs(path))] == ["aab", "bba"]
    spans = greedy_decode(path_log_probs(path), VOCAB)
    by_character = CharLmBeamDecoder(VOCAB, lm, by_character=True, alpha=0.0, beta=0.0)
    assert [
        (w.text, w.start_frame, w.end_frame) for w in by_character.words(path_log_probs(path))
    ] == [(s.text, s.start_frame, s.end_frame) for s in spans if s.text != " "]


def test_word_lm_files_go_to_pyctcdecode(tmp_path):
    from polyspeech.ctc.decode import LmBeamDecoder, make_decoder
    from polyspeech.text.ngram import is_character_arpa

    (tmp_path / "words.arpa").write_text(ARPA)
    assert not is_character_arpa(tmp_path / "words.arpa")
    assert isinstance(make_decoder(VOCAB, False, tmp_path / "words.arpa", "eng"), LmBeamDecoder)


def test_a_folder_without_the_language_names_what_it_has(tmp_path):
    from polyspeech.ctc.decode import make_decoder
    from polyspeech.errors import InputError

    char_lm_case(tmp_path)
    (tmp_path / "decoding.json").write_text("{}")  # settings, not a language
    with pytest.raises(InputError, match=r"no language model for 'fra'.*it has: eng$"):
        make_decoder(VOCAB, False, tmp_path, "fra")
    with pytest.raises(InputError, match="language model file not found"):
        make_decoder(VOCAB, False, tmp_path / "none.arpa", "eng")


def test_an_lm_folders_decoding_settings_apply_to_their_language_only(tmp_path):
    import json

    from polyspeech.ctc.decode import make_decoder

    vocab, log_probs = char_lm_case(tmp_path)
    settings = tmp_path / "decoding.json"
    settings.write_text(json.dumps({"fra": {"alpha": 0.01}}))
    decoder = make_decoder(vocab, False, tmp_path, "eng")
    assert (decoder.alpha, decoder.beta, decoder.beam_width) == (0.6, 2.0, 16)  # the defaults
    assert [w.text for w in decoder.words(log_probs)] == ["cat"]
    settings.write_text(json.dumps({"eng": {"alpha": 0.01, "beta": 0.5, "beam_width": 4}}))
    decoder = make_decoder(vocab, False, tmp_path, "eng")
    assert (decoder.alpha, decoder.beta, decoder.beam_width) == (0.01, 0.5, 4)
    assert [w.text for w in decoder.words(log_probs)] == ["bat"]  # the LM barely counts now


def test_a_bad_decoding_settings_file_is_named(tmp_path):
    from polyspeech.ctc.decode import make_decoder
    from polyspeech.errors import InputError

    vocab, _ = char_lm_case(tmp_path)
    settings = tmp_path / "decoding.json"
    for text, problem in [
        ("{not json", "Expecting property name"),
        ("[1, 2]", "expected {language: {setting: value}}"),
        ('{"eng": 0.5}', "expected"),
        ('{"eng": {"weight": 2}}', "unknown setting 'weight' for 'eng'"),
        ('{"eng": {"alpha": "high"}}', "could not convert"),
        ('{"eng": {"tone_weight": 1.5}}', "tone_weight for 'eng' must be between 0 and 1"),
    ]:
        settings.write_text(text)
        with pytest.raises(
            InputError, match=f"decoding.json: not a decoding settings file.*{problem}"
        ):
            make_decoder(vocab, False, tmp_path, "eng")


def tone_case(tmp_path):
    """Mā (妈) heard a little more clearly than mà (骂), and a Chinese character LM that has
    only ever seen 骂."""
    from polyspeech.text.ngram import estimate, sentence_tokens, write_arpa

    vocab = Vocabulary.from_texts(["妈骂"])
    index = vocab.mapping()
    probs = np.full((3, len(vocab)), 0.01)
    probs[0, index["妈"]], probs[0, index["骂"]] = 0.7, 0.25
    probs[1:, vocab.blank] = 0.9
    write_arpa(estimate([sentence_tokens("骂")] * 5, order=2), tmp_path / "cmn.arpa.gz")
    return vocab, np.log(probs / probs.sum(axis=1, keepdims=True))


def test_merged_tones_let_the_lm_choose_between_syllables_read_alike(tmp_path):
    import json

    from polyspeech.ctc.decode import ToneMergingDecoder, make_decoder, toneless_classes

    vocab, log_probs = tone_case(tmp_path)
    index = vocab.mapping()
    classes = toneless_classes(vocab, "cmn")
    assert classes[index["妈"]] == classes[index["骂"]] >= 0  # both "mA" without the tone
    assert classes[vocab.blank] == classes[index["|"]] == -1
    settings = tmp_path / "decoding.json"
    settings.write_text(json.dumps({"cmn": {"alpha": 0.1}}))
    assert [w.text for w in make_decoder(vocab, True, tmp_path, "cmn").words(log_probs)] == ["妈"]
    settings.write_text(json.dumps({"cmn": {"alpha": 0.1, "tone_weight": 0.0}}))
    decoder = make_decoder(vocab, True, tmp_path, "cmn")
    assert isinstance(decoder, ToneMergingDecoder)
    assert [w.text for w in decoder.words(log_probs)] == ["骂"]


def test_merging_tones_keeps_each_syllables_probability():
    from scipy.special import logsumexp

    from polyspeech.ctc.decode import CharLmBeamDecoder, ToneMergingDecoder
    from polyspeech.text.ngram import estimate, sentence_tokens

    lm = estimate([sentence_tokens("ab")], order=2)
    decoder = CharLmBeamDecoder(VOCAB, lm, by_character=True)
    classes = np.full(len(VOCAB), -1)
    index = VOCAB.mapping()
    classes[index["a"]] = classes[index["b"]] = 0
    log_probs = path_log_probs(["a", "-", "b", "b", "-"])
    merged = ToneMergingDecoder(decoder, classes, 0.0).merged(log_probs)
    pair = [index["a"], index["b"]]
    others = [i for i in range(len(VOCAB)) if i not in pair]
    assert np.allclose(merged[:, others], log_probs[:, others])
    assert np.allclose(logsumexp(merged[:, pair], axis=1), logsumexp(log_probs[:, pair], axis=1))
    assert np.allclose(merged[:, pair[0]], merged[:, pair[1]])  # shared equally
    half = ToneMergingDecoder(decoder, classes, 0.5).merged(log_probs)
    assert np.allclose(logsumexp(half[:, pair], axis=1), logsumexp(log_probs[:, pair], axis=1))
    gap = np.abs(log_probs[:, pair[0]] - log_probs[:, pair[1]])
    assert np.allclose(np.abs(half[:, pair[0]] - half[:, pair[1]]), gap / 2)
    assert np.allclose(ToneMergingDecoder(decoder, classes, 1.0).merged(log_probs), log_probs)
