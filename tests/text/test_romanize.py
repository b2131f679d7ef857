from polyspeech.text import romanize


def test_romanize_scripts():
    assert (
        romanize("\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440", "rus") == "Privet mir"
    )
    assert romanize("\u4f60\u597d", "cmn") == "nihao"
    assert romanize("\u0928\u092e\u0938\u094d\u0924\u0947", "hi") == "namaste"
    assert romanize("Stra\u00dfe", "deu") == "Strasse"
    assert romanize("plain ascii") == "plain ascii"


def test_mandarin_numerals_are_read_as_spoken_not_as_digits():
    assert romanize("六百二十", "cmn") == "liubaiershi"
    assert romanize("一起", "zh") == "yiqi"
    assert romanize("六百", "jpn") != "liubai"  # Japanese reads them otherwise
