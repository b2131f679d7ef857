import pytest

from polyspeech.errors import InputError
from polyspeech.text import is_written_without_spaces, to_iso639_3


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("eng", "eng"),
        ("en", "eng"),
        ("EN_us", "eng"),
        ("pt-BR", "por"),
        ("ger", "deu"),  # ISO 639-2/B
        ("zh", "cmn"),  # macrolanguage: its dominant member, as MMS names it
        ("sw", "swh"),
        ("cmn", "cmn"),
        ("swh", "swh"),
        ("in", "ind"),  # deprecated ISO 639-1
    ],
)
def test_codes_map_to_iso639_3(code, expected):
    assert to_iso639_3(code) == expected


@pytest.mark.parametrize("code", ["xx", "", "  ", "english!"])
def test_unknown_codes_are_refused(code):
    with pytest.raises(InputError, match="language code"):
        to_iso639_3(code)


def test_languages_without_spaces():
    assert is_written_without_spaces("zh")
    assert is_written_without_spaces("jpn")
    assert not is_written_without_spaces("eng")
    assert not is_written_without_spaces("kor")
