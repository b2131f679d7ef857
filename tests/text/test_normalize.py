import pytest

from polyspeech.text import normalize_text


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("Hello, World!  Don\u2019t   stop\u2014now.", "eng", "hello world don't stop now"),
        ("L'homme est l\u00e0... \u00ab oui \u00bb", "fra", "l'homme est l\u00e0 oui"),
        ("Stra\u00dfe \u201eK\u00f6ln\u201c", "deu", "strasse k\u00f6ln"),
        ("\u0130stanbul'da I\u015eIK var.", "tur", "istanbul'da \u0131\u015f\u0131k var"),
        ("Istanbul", "eng", "istanbul"),
        (
            "\u4f60\u597d\uff0c \u4e16\u754c\uff01 \u6211\u7528 iPhone \u624b\u673a\u3002",
            "cmn",
            "\u4f60\u597d\u4e16\u754c\u6211\u7528iphone\u624b\u673a",
        ),
        (
            "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
            "rus",
            "\u043f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440",
        ),
        (
            "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e\u0964",
            "hin",
            "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
        ),
        (
            "\uff46\uff55\uff4c\uff4c\u3000\uff57\uff49\uff44\uff54\uff48 \u2460",
            None,
            "full width 1",
        ),
        ("'quoted' words-with-hyphens", None, "quoted words with hyphens"),
        ("", "eng", ""),
        (" ?! ", "eng", ""),
    ],
)
def test_normalize(text, lang, expected):
    assert normalize_text(text, lang) == expected


def test_normalization_is_idempotent():
    text = "  Ça va? Oui, \u00e7a VA tr\u00e8s bien!  "
    once = normalize_text(text, "fra")
    assert normalize_text(once, "fra") == once == "\u00e7a va oui \u00e7a va tr\u00e8s bien"
