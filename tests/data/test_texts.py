import re
import unicodedata

import numpy as np
import pytest

from polyspeech.data.texts import load_texts, number_words, sentence_stream, text_languages

MAIN_LANGUAGES = [
    "eng",
    "deu",
    "fra",
    "spa",
    "ita",
    "por",
    "nld",
    "swh",
    "ind",
    "tur",
    "rus",
    "cmn",
]


def test_twelve_main_languages_and_two_more():
    assert set(MAIN_LANGUAGES) < set(text_languages())
    assert len(text_languages()) >= 14


@pytest.mark.parametrize("lang", sorted({*MAIN_LANGUAGES, "fin", "hun"}))
def test_language_text_files(lang):
    texts = load_texts(lang)
    assert len(texts.sentences) >= 300
    assert len(texts.templates) >= 80
    everything = list(texts.sentences) + list(texts.templates)
    everything += [value for values in texts.slots.values() for value in values]
    assert not [line for line in everything if re.search(r"[0-9]", line)]
    letters = {c for line in everything for c in re.sub(r"\{\w+\}", "", line) if c.isalpha()}
    scripts = {unicodedata.name(c).split()[0] for c in letters}
    expected = {"rus": {"CYRILLIC"}, "cmn": {"CJK"}}.get(lang, {"LATIN"})
    assert scripts == expected, f"{lang}: letters from {scripts}"


def test_chinese_is_simplified():
    texts = load_texts("cmn")
    text = "".join(texts.sentences) + "".join(texts.templates)
    # characters that exist only in traditional writing (simplified: 这 说 国 们 门 时 对 学)
    assert not set("這說國們門時對學") & set(text)


@pytest.mark.parametrize(
    ("n", "chinese", "swahili"),
    [
        (2, "\u4e8c", "mbili"),
        (12, "\u5341\u4e8c", "kumi na mbili"),
        (20, "\u4e8c\u5341", "ishirini"),
        (105, "\u4e00\u767e\u96f6\u4e94", "mia moja na tano"),
        (110, "\u4e00\u767e\u4e00\u5341", "mia moja kumi"),
        (342, "\u4e09\u767e\u56db\u5341\u4e8c", "mia tatu arobaini na mbili"),
        (900, "\u4e5d\u767e", "mia tisa"),
    ],
)
def test_number_words_written_here(n, chinese, swahili):
    assert number_words(n, "cmn") == chinese
    assert number_words(n, "swh") == swahili


def test_number_words_from_num2words():
    assert number_words(21, "eng") == "twenty-one"
    assert number_words(21, "deu") == "einundzwanzig"
    assert number_words(102, "hun") == "százkettő"  # standalone form, not attributive "százkét"
    assert number_words(222, "hun") == "kétszázhuszonkettő"


def take(lang, seed, count):
    stream = sentence_stream(lang, np.random.default_rng(seed))
    return [next(stream) for _ in range(count)]


def test_stream_is_reproducible_and_varied():
    first = take("eng", 7, 400)
    assert first == take("eng", 7, 400)
    assert first != take("eng", 8, 400)
    texts = [text for text, _ in first]
    assert len(set(texts)) > 380
    assert {source for _, source in first} == {"sentence", "template", "words"}
    assert not [text for text in texts if "{" in text]
    words = {word for text in texts for word in text.lower().split()}
    assert len(words) > 1500


def test_every_language_fills_every_template():
    for lang in text_languages():
        for text, source in take(lang, 0, 300):
            assert "{" not in text and "}" not in text, (lang, source, text)
            assert text.strip()
