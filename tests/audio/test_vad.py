from pathlib import Path

import numpy as np
import pytest

from polyspeech.audio import load_audio
from polyspeech.audio.vad import (
    LOUD_LEVEL,
    MAX_GAIN,
    SPEECH_PAD_MS,
    level_gain,
    pieces,
    speech_regions,
)
from polyspeech.errors import InputError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RATE = 16000


def at_level(samples: np.ndarray, dbfs: float) -> np.ndarray:
    """``samples`` scaled to an RMS of ``dbfs``."""
    rms = np.sqrt(np.mean(samples.astype(np.float64) ** 2))
    return (samples * (10 ** (dbfs / 20) / rms)).astype(np.float32)


def speech_seconds(regions: list[tuple[int, int]]) -> float:
    return sum(end - start for start, end in regions) / RATE


@pytest.fixture(scope="module")
def sentence():
    """An English example sentence with 0.5 s of silence either side."""
    silence = np.zeros(RATE // 2, np.float32)
    return np.concatenate([silence, load_audio(EXAMPLES / "eng.flac"), silence])


def loud_parts(samples: np.ndarray) -> float:
    """The 95th percentile of 512-sample chunks' RMS, in dBFS."""
    chunks = samples[: len(samples) // 512 * 512].reshape(-1, 512).astype(np.float64)
    return 20 * np.log10(np.percentile(np.sqrt((chunks**2).mean(axis=1)), 95))


def test_quiet_files_are_raised_to_the_level_loud_ones_are_heard_at(sentence):
    quiet = at_level(sentence, -40)
    assert loud_parts(quiet * level_gain(quiet)) == pytest.approx(LOUD_LEVEL, abs=0.01)
    loud = at_level(sentence, -10)
    assert loud_parts(loud) > LOUD_LEVEL and level_gain(loud) == 1.0  # never lowered
    hiss = (np.random.default_rng(0).standard_normal(RATE) * 1e-5).astype(np.float32)
    assert level_gain(hiss) == pytest.approx(10 ** (MAX_GAIN / 20))  # capped
    assert level_gain(np.zeros(RATE, np.float32)) == pytest.approx(10 ** (MAX_GAIN / 20))


def test_a_quiet_recording_gets_the_regions_of_a_louder_one(sentence):
    louder, quiet = speech_regions([at_level(sentence, -27), at_level(sentence, -45)])
    assert quiet == louder  # both heard with their loud parts at LOUD_LEVEL
    assert 3.5 < speech_seconds(quiet) < 5.0  # of 3.95 s, with 0.4 s padding


def brown_noise(length: int, seed: int) -> np.ndarray:
    """Noise whose power falls 6 dB an octave (a rumble, as of traffic), without drift."""
    brown = np.cumsum(np.random.default_rng(seed).standard_normal(length))
    return brown - np.convolve(brown, np.ones(400) / 400, "same")


def test_quiet_speech_under_rumble_is_heard():
    # Heard as recorded, silero found no speech in this mix (nor with seeds 1 to 3).
    silence = np.zeros(RATE // 2, np.float32)
    speech = np.concatenate([silence, load_audio(EXAMPLES / "fra.flac"), silence])
    mix = at_level(speech, -20) + at_level(brown_noise(len(speech), 0), -10)
    found = speech_regions([at_level(mix, -45)])[0]
    assert speech_seconds(found) > 3.0  # of 3.96 s
    pad = SPEECH_PAD_MS * RATE // 1000
    assert all(
        RATE // 2 - pad <= start and end <= len(mix) - RATE // 2 + pad for start, end in found
    )


def test_pure_low_noise_has_no_speech():
    rng = np.random.default_rng(1)
    t = np.arange(10 * RATE) / RATE
    white = rng.standard_normal(len(t))
    brown = brown_noise(len(t), 1)
    hum = np.sin(2 * np.pi * 50 * t) + 0.5 * np.sin(2 * np.pi * 150 * t)
    beds = [at_level(bed, level) for bed in (white, brown, hum) for level in (-70, -50, -35)]
    assert speech_regions([*beds, np.zeros(len(t), np.float32)]) == [[]] * (len(beds) + 1)


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.2, 1.5, float("nan")])
def test_a_threshold_outside_0_1_is_refused(sentence, threshold):
    with pytest.raises(InputError, match="vad threshold must be between 0 and 1"):
        speech_regions([sentence], threshold=threshold)
    for vad in (True, False):
        with pytest.raises(InputError, match="vad threshold"):
            pieces([sentence], 30.0, vad, threshold=threshold)
