import pytest

from polyspeech.align.transcript import prepare_transcript, read_transcript
from polyspeech.errors import InputError
from polyspeech.text.vocab import Vocabulary

LATIN = Vocabulary.from_texts(["abcdefghijklmnopqrstuvwxyz'"])


def spelled(word, vocabulary=LATIN):
    return "".join(vocabulary.tokens[t] for t in word.tokens)


def test_words_keep_their_script_and_each_character_its_tokens():
    transcript = prepare_transcript(["Привет, мир!", "你好。", "Don't"], LATIN, None)
    words = transcript.words
    assert [w.text for w in words] == ["Привет,", "мир!", "你", "好。", "Don't"]
    assert [w.line for w in words] == [0, 0, 1, 1, 2]
    assert [spelled(w) for w in words] == ["privet", "mir", "ni", "hao", "don't"]
    assert words[0].char_ends == (1, 2, 3, 4, 5, 6, 6)  # the comma adds no token
    assert words[3].char_ends == (3, 3)
    assert transcript.unmapped == {}
    assert transcript.delimiter == LATIN.mapping()["|"]


def test_characters_the_vocabulary_lacks_are_reported():
    transcript = prepare_transcript(["call 911 now"], LATIN, "eng")
    assert [spelled(w) for w in transcript.words] == ["call", "", "now"]
    assert transcript.unmapped == {"9": 1, "1": 2}


def test_a_vocabulary_that_covers_the_script_is_used_as_it_is():
    chinese = Vocabulary.from_texts(["你好世界"])
    transcript = prepare_transcript(["你好\uff0c世界"], chinese, "cmn")
    assert [spelled(w, chinese) for w in transcript.words] == ["你", "好", "世", "界"]
    assert transcript.delimiter is None  # Chinese is written without spaces


def test_an_upper_case_vocabulary_gets_upper_case():
    upper = Vocabulary.from_texts(["ABCDEFGHIJKLMNOPQRSTUVWXYZ'"])
    transcript = prepare_transcript(["Hello café"], upper, "eng")
    assert [spelled(w, upper) for w in transcript.words] == ["HELLO", "CAFE"]


def test_bad_transcript_files(tmp_path):
    with pytest.raises(InputError, match="transcript not found"):
        read_transcript(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(InputError, match="transcript is empty"):
        read_transcript(tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_transcript(tmp_path / "latin1.txt")
    (tmp_path / "ok.txt").write_text("one line\n\n two \n")
    assert read_transcript(tmp_path / "ok.txt") == ["one line", "two"]
