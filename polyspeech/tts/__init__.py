"""Speech synthesis: an MMS-TTS (VITS) folder, or espeak-ng (100+ languages, offline)."""

from __future__ import annotations

import os

import numpy as np
import soxr

from polyspeech.audio import SAMPLE_RATE
from polyspeech.errors import InputError
from polyspeech.hub import ModelSource

ESPEAK_RATE = 175  # words per minute at speaking rate 1


def espeak_voice(lang: str) -> str:
    """espeak-ng's voice for an ISO 639 code: the corpus's choice, else the code itself in
    ISO 639-1 or -3 where espeak-ng has it."""
    import langcodes

    from polyspeech.text.languages import to_iso639_3
    from polyspeech.tts.espeak import VOICES, get_espeak

    code = to_iso639_3(lang)
    if code in VOICES:
        return VOICES[code]
    engine = get_espeak()
    for name in (langcodes.Language.get(code).language, code):
        if name and engine.has_voice(name):
            return name
    raise InputError(f"espeak-ng has no voice for language {code!r}; give a TTS --model")


def speak(
    text: str,
    lang: str | None = None,
    model: str | os.PathLike | ModelSource | None = None,
    speaking_rate: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """``text`` spoken (16 kHz float32): by the MMS-TTS ``model`` (a folder, a Hub id such as
    ``facebook/mms-tts-eng``, or a resolved :class:`ModelSource`), or without one by
    espeak-ng in ``lang``'s voice. The same arguments give the same audio (a VITS voice draws
    its noise from ``seed``; espeak-ng speaks in a new process,
    :func:`polyspeech.tts.espeak.synthesize_afresh`)."""
    if not text.strip():
        raise InputError("nothing to speak: the text is empty")
    if not 0.25 <= speaking_rate <= 4.0:
        raise InputError(f"--speaking-rate {speaking_rate}: use 0.25 to 4")
    if model is not None:
        from polyspeech.tts.vits import VitsVoice

        return VitsVoice(model).speak(text, lang, speaking_rate, seed)
    if lang is None:
        raise InputError("espeak-ng needs the language: give --lang (or a TTS --model)")
    from polyspeech.tts.espeak import get_espeak, synthesize_afresh

    voice = espeak_voice(lang)
    samples = synthesize_afresh(text, voice, round(ESPEAK_RATE * speaking_rate), seed=seed)
    if not samples.size:
        raise InputError(f"espeak-ng produced no audio for {text[:40]!r} ({voice})")
    rate = get_espeak().sample_rate
    return soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
