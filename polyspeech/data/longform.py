"""Long recordings with known line boundaries, for testing and measuring alignment.

Held-out synthetic sentences (their corpus split is "test", spoken by the held-out voice
variants) are joined with random pauses of 0.2-1.5 s, and white noise 30 dB below the speech
is added, so every line's true start and end (its first and last sample above 2% of the
sentence's peak, before noise) is known.
"""

from __future__ import annotations

import numpy as np
import soxr

from polyspeech.audio import SAMPLE_RATE
from polyspeech.data.synth import TEST_VARIANTS, split_of
from polyspeech.data.texts import sentence_stream, text_languages
from polyspeech.tts.espeak import VOICES, get_espeak

ONSET = 0.02  # of the sentence's peak: what counts as its first and last sample


def spoken_sentences(lang: str, seed: int):
    """Endless (text, samples at 16 kHz, speech start, speech end) of held-out sentences."""
    rng = np.random.default_rng([seed, text_languages().index(lang)])
    espeak, seen = get_espeak(), set()
    for text, _ in sentence_stream(lang, rng):
        if split_of(text, lang) != "test" or text in seen:
            continue
        seen.add(text)
        voice = f"{VOICES[lang]}+{TEST_VARIANTS[len(seen) % len(TEST_VARIANTS)]}"
        speech = espeak.synthesize(text, voice, rate=int(rng.integers(140, 190)), seed=len(seen))
        speech = soxr.resample(speech, espeak.sample_rate, SAMPLE_RATE).astype(np.float32)
        loud = np.flatnonzero(np.abs(speech) > ONSET * np.abs(speech).max())
        if len(loud):
            yield text, speech, int(loud[0]), int(loud[-1]) + 1


def long_recording(lang: str, minutes: float, prefix: float, seed: int):
    """About ``prefix`` seconds of sentences the transcript leaves out, then ``minutes`` of
    transcribed ones: the samples (16 kHz), the transcript lines, and each line's true
    (start, end) in seconds, an array (lines, 2)."""
    rng = np.random.default_rng(seed)
    pieces, lines, truth, length = [], [], [], 0
    for text, speech, start, end in spoken_sentences(lang, seed):
        pause = np.zeros(int(rng.uniform(0.2, 1.5) * SAMPLE_RATE), np.float32)
        if length >= prefix * SAMPLE_RATE:  # the prefix's sentences are not in the transcript
            lines.append(text)
            truth.append(((length + start) / SAMPLE_RATE, (length + end) / SAMPLE_RATE))
        pieces += [speech, pause]
        length += len(speech) + len(pause)
        if length >= (prefix + minutes * 60) * SAMPLE_RATE:
            break
    samples = np.concatenate(pieces)
    power = np.mean(np.concatenate([p for p in pieces if p.any()]) ** 2)
    noise = np.random.default_rng(seed + 1).standard_normal(len(samples)).astype(np.float32)
    samples += noise * np.sqrt(power / 10 ** (30 / 10))
    return samples, lines, np.array(truth)
