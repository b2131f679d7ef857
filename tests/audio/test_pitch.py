"""Pitch features: known frequencies recovered, one contour for high and low voices, and
librosa's pYIN (the reference tracker) agreeing on synthetic Mandarin."""

import librosa
import numpy as np
import pytest

from polyspeech.audio.features import fbank
from polyspeech.audio.pitch import pitch
from polyspeech.tts.espeak import get_espeak

RATE = 16000


def glide(start: float, end: float, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """A voice-like harmonic tone whose frequency glides from ``start`` to ``end`` Hz."""
    times = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(start + (end - start) * times / seconds) / RATE
    tone = sum(np.sin(k * phase) / k for k in range(1, 8))
    noise = 0.01 * np.random.default_rng(seed).standard_normal(len(times))
    return (0.3 * tone + noise).astype(np.float32)


def centres(frames: int) -> np.ndarray:
    return (np.arange(frames) * 160 + 200) / RATE  # the middle of each fbank frame


@pytest.mark.parametrize("length", [400, 401, 559, 560, 16000])
def test_one_row_per_fbank_frame(length):
    samples = glide(100, 200)[:length]
    assert pitch(samples).shape == (len(fbank(samples)), 3)


def test_a_gliding_tone_gives_its_frequency_and_slope():
    features = pitch(glide(120, 220))
    true = np.log(120 + 100 * centres(len(features)))
    error = features[:, 0] - (true - true.mean())
    assert np.abs(error).max() < 0.03 and np.abs(np.median(error)) < 0.01
    slope = np.diff(true).mean()  # per frame
    assert np.median(features[2:-2, 1]) == pytest.approx(slope, rel=0.1)
    assert features[:, 2].min() > 0.8  # periodic throughout


def test_a_high_and_a_low_voice_give_one_contour():
    low, high = pitch(glide(110, 160)), pitch(glide(176, 256))  # 1.6 times as high
    assert np.abs(low[:, :2] - high[:, :2]).max() < 0.03


def test_noise_silence_and_short_input():
    noise = 0.1 * np.random.default_rng(1).standard_normal(RATE).astype(np.float32)
    assert pitch(noise)[:, 2].mean() < 0.3
    silence = pitch(np.zeros(RATE, np.float32))
    assert np.isfinite(silence).all() and not silence.any()
    assert pitch(np.zeros(399, np.float32)).shape == (0, 3)


def test_agrees_with_librosa_pyin_on_synthetic_mandarin():
    espeak = get_espeak()
    speech = espeak.synthesize("妈妈骑马。马慢。妈妈骂马。", "cmn-latn-pinyin", pitch=40)
    samples = librosa.resample(speech, orig_sr=espeak.sample_rate, target_sr=RATE)
    ours = pitch(samples)
    theirs, voiced, _ = librosa.pyin(
        samples, fmin=50, fmax=500, sr=RATE, frame_length=1024, hop_length=160
    )
    # pYIN's frames are centred on multiples of the hop; ours 200 samples later
    at = np.round(centres(len(ours)) * RATE / 160).astype(int)
    both = (ours[:, 2] >= 0.5) & voiced[at]
    assert both.sum() > 0.4 * len(ours)
    difference = ours[both, 0] - np.log(theirs[at][both])
    difference -= np.median(difference)  # ours is relative to the clip's mean
    assert np.mean(np.abs(difference) < 0.05) > 0.9
