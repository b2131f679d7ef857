"""Round trip: text spoken by `speak` (espeak-ng, no model) and transcribed by the embedded
default model (builtin:ctc, decoding as it does by default: with its LMs) comes back within
CER 15%, per main language. The text is five hand-written sentences per language from the
corpus's test split (never trained on)."""

import pytest

import polyspeech
from polyspeech.data.synth import split_of
from polyspeech.data.texts import load_texts
from polyspeech.eval.metrics import cer
from polyspeech.text.normalize import normalize_text

# builtin:ctc is short of 15% in French (measured 2026-12-07 with the lead-in for speech at the
# file's first sample, on an AMD EPYC with AVX2 in int8: 15.8% with its LMs, 30 errors in 190
# characters where 28 would pass; 15.3% before the lead-in; Chinese 5.7%, English 9.6%, Russian
# 9.1%, the others under 5%). Not strict: two characters from the line, a processor that rounds
# otherwise may pass it; the recipe README's "A lead-in" has the figures
SHORT_OF_TARGET = {"fra"}
MAIN_LANGS = "cmn deu eng fra ind ita nld por rus spa swh tur".split()


@pytest.fixture(scope="module")
def default_model():
    return polyspeech.load("builtin:ctc")


@pytest.mark.parametrize(
    "lang",
    [
        pytest.param(lang, marks=pytest.mark.xfail(reason="builtin:ctc accuracy"))
        if lang in SHORT_OF_TARGET
        else lang
        for lang in MAIN_LANGS
    ],
)
def test_spoken_text_comes_back(default_model, lang):
    sentences = [s for s in load_texts(lang).sentences if split_of(s, lang) == "test"][:5]
    assert len(sentences) == 5
    refs, hyps = [], []
    for sentence in sentences:
        result = default_model.transcribe(polyspeech.speak(sentence, lang), language=lang)
        refs.append(normalize_text(sentence, lang))
        hyps.append(normalize_text(result.text, lang))
    rate = cer(refs, hyps).rate
    assert rate <= 0.15, f"CER {rate:.1%}: {hyps}"
