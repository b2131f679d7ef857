import numpy as np
import pytest

from polyspeech.errors import DependencyError
from polyspeech.tts import espeak


def test_longer_text_gives_longer_speech():
    engine = espeak.get_espeak()
    short = engine.synthesize("Good morning.", "en-us")
    long = engine.synthesize(
        "Good morning, the train to the airport leaves in ten minutes.", "en-us"
    )
    assert engine.sample_rate == 22050
    assert 0.5 < len(short) / engine.sample_rate < len(long) / engine.sample_rate
    assert np.abs(long).max() > 0.1


def test_variants_and_rate_change_the_sound():
    engine = espeak.get_espeak()
    base = engine.synthesize("Hello there.", "en-us")
    assert not np.array_equal(base, engine.synthesize("Hello there.", "en-us+f2"))
    slow = engine.synthesize("Hello there.", "en-us", rate=100)
    assert len(slow) > 1.3 * len(base)


def test_unknown_voice_and_variant():
    engine = espeak.get_espeak()
    assert engine.has_voice("cmn-latn-pinyin+m3")
    assert not engine.has_voice("xx-nowhere")
    assert not engine.has_voice("en-us+nobody")
    with pytest.raises(DependencyError, match="no voice 'en-us\\+nobody'"):
        engine.synthesize("Hello.", "en-us+nobody")


def test_speaking_afresh_ignores_what_was_spoken_before_and_reports_errors():
    engine = espeak.get_espeak()
    first = espeak.synthesize_afresh("Hello there.", "en-us")
    engine.synthesize("Something else first.", "en-us")
    assert np.array_equal(first, espeak.synthesize_afresh("Hello there.", "en-us"))
    with pytest.raises(DependencyError, match=r"^espeak-ng has no voice 'en-us\+nobody'$"):
        espeak.synthesize_afresh("Hello.", "en-us+nobody")


def test_missing_espeak_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "espeakng_loader", None)
    monkeypatch.setattr(espeak.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(DependencyError, match="espeak-ng is not installed: pip install"):
        espeak.Espeak()


def test_mnemonics_keep_the_tone_contours_ipa_writes_alike():
    speaker = espeak.get_espeak()
    shi1, shi4 = (speaker.phonemes(text, "cmn-latn-pinyin") for text in ("诗", "是"))
    assert shi1 == shi4  # espeak-ng's IPA: "5" for both 55 and 51
    assert "55" in speaker.phonemes("诗", "cmn-latn-pinyin", ipa=False)
    assert "51" in speaker.phonemes("是", "cmn-latn-pinyin", ipa=False)


def test_readings_drop_the_marks_and_with_tone_false_the_tone():
    speaker = espeak.get_espeak()
    ma1, ma4 = (speaker.reading(text, "cmn-latn-pinyin") for text in ("妈", "骂"))
    assert ma1 != ma4 and not set("'_|,") & set(ma1 + ma4)
    toneless = {speaker.reading(text, "cmn-latn-pinyin", tone=False) for text in "妈麻马骂"}
    assert len(toneless) == 1 and not any(char.isdigit() for char in toneless.pop())
