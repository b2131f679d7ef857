import pytest

from polyspeech.errors import InputError
from polyspeech.text import is_written_without_spaces, to_iso639_3
from polyspeech.text.languages import as_published, model_language


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


MMS_KEYS = ["eng", "ara", "tgl", "prs", "cmn-script_simplified", "srp-script_latin"]


@pytest.mark.parametrize(
    ("asked", "key"),
    [
        ("tgl", "tgl"),  # a model's own code is kept, though to_iso639_3 makes it fil
        ("prs", "prs"),
        ("tl", "tgl"),  # ISO 639-1: CLDR's fil is not a key, ISO 639-2's tgl is
        ("ar", "ara"),
        ("EN", "eng"),
        ("zh", "cmn-script_simplified"),
        ("sr-Latn", "srp-script_latin"),
        ("srp-script_latin", "srp-script_latin"),
        ("sr-Cyrl", None),  # a script the model lacks: not its Latin key
        ("deu", None),
        ("xx", None),
    ],
)
def test_model_language_finds_a_models_key(asked, key):
    assert model_language(asked, MMS_KEYS, "m") == key


def test_model_language_refuses_a_code_of_several_scripts():
    keys = ["azj-script_latin", "azj-script_cyrillic"]
    with pytest.raises(InputError) as error:
        model_language("azj", keys, "m")
    assert str(error.value) == (
        "m: azj is written in several scripts here; choose one of azj-script_cyrillic, "
        "azj-script_latin"
    )
    assert model_language("azj-Cyrl", keys, "m") == "azj-script_cyrillic"


@pytest.mark.parametrize(
    ("label", "key"),
    [("tgl", "tgl"), ("swc", "swc"), ("cmn-script_simplified", "cmn-script_simplified"),
     ("de", "deu"), ("pt-BR", "por"), ("ENG", "eng")],
)  # fmt: skip
def test_as_published_keeps_three_letter_codes_and_maps_the_others(label, key):
    assert as_published(label) == key
