"""polyspeech.data.augment: each transform does what it says, keeps the speech where it was, and
draws only from the generator it is given."""

import numpy as np
import pytest

from polyspeech.data import augment
from polyspeech.errors import InputError
from polyspeech.tts import speak
from tests.conftest import sine

RATE = 16000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Three seconds or so of espeak-ng speech (a dependency, so always here)."""
    return speak("The museum opens at nine and closes at five on weekdays.", "eng")


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    return 10 * np.log10(augment.power(clean) / augment.power(noisy - clean))


def lag(output: np.ndarray, reference: np.ndarray) -> int:
    """Samples by which ``output`` lags ``reference`` (GCC-PHAT: one sharp peak even for
    voiced speech, whose plain cross-correlation also peaks one pitch period away)."""
    size = len(output) + len(reference)
    cross = np.fft.rfft(output, size) * np.conj(np.fft.rfft(reference, size))
    peak = int(np.argmax(np.fft.irfft(cross / (np.abs(cross) + 1e-9), size)))
    return peak if peak < size // 2 else peak - size


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * RATE / len(samples))


def band_db(samples: np.ndarray, low: float, high: float) -> float:
    """Energy between ``low`` and ``high`` Hz relative to the whole, in dB."""
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / RATE)
    return 10 * np.log10(spectrum[(freqs >= low) & (freqs < high)].sum() / spectrum.sum())


@pytest.mark.parametrize("factor", [0.9, 1.1, 1.25])
def test_speed_perturbation_changes_length_and_pitch_by_the_factor(factor):
    tone = sine(1000, 1.0, RATE)
    faster = augment.speed_perturb(tone, factor)
    assert len(faster) == round(RATE / factor)
    assert dominant_hz(faster) == pytest.approx(1000 * factor, abs=5)


def test_speed_factor_out_of_range_is_an_input_error():
    with pytest.raises(InputError, match="speed factor 3"):
        augment.speed_perturb(sine(100, 0.1, RATE), 3)


def test_vtlp_moves_frequencies_below_the_boundary_and_keeps_the_length():
    tone = sine(1000, 1.0, RATE)
    for alpha in (0.9, 1.1):
        warped = augment.vtlp(tone, alpha)
        assert len(warped) == len(tone)
        assert dominant_hz(warped) == pytest.approx(1000 * alpha, abs=15)


def test_vtlp_at_alpha_one_gives_the_input_back(speech):
    same = augment.vtlp(speech, 1.0)
    assert np.max(np.abs(same - speech)) < 1e-4


@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
def test_white_noise_is_added_at_the_requested_snr(speech, snr):
    noisy = augment.add_noise(speech, snr, np.random.default_rng(0))
    assert abs(snr_db(speech, noisy) - snr) < 0.5


def test_a_noise_recording_is_looped_to_length_at_the_requested_snr(speech):
    hum = sine(50, 0.3, RATE)  # shorter than the speech: looped
    noisy = augment.add_noise(speech, 12.0, np.random.default_rng(1), hum)
    assert len(noisy) == len(speech)
    assert abs(snr_db(speech, noisy) - 12.0) < 0.5
    assert dominant_hz(noisy - speech) == pytest.approx(50, abs=2)


def test_silent_noise_is_an_input_error(speech):
    with pytest.raises(InputError, match="silent"):
        augment.add_noise(speech, 10, np.random.default_rng(0), np.zeros(100, np.float32))


def test_babble_is_made_of_the_other_clips_at_the_requested_snr(speech):
    others = [sine(f, 0.7, RATE) for f in (300, 700, 1100)]
    mixed = augment.babble(speech, others, 6.0, np.random.default_rng(2), talkers=3)
    assert abs(snr_db(speech, mixed) - 6.0) < 0.5
    background = np.abs(np.fft.rfft(mixed - speech))
    freqs = np.fft.rfftfreq(len(speech), 1 / RATE)
    strongest = freqs[np.argsort(background)[-50:]]
    assert all(min(abs(f - t) for t in (300, 700, 1100)) < 10 for f in strongest)


def test_babble_without_other_clips_is_an_input_error(speech):
    with pytest.raises(InputError, match="other clips"):
        augment.babble(speech, [], 10, np.random.default_rng(0))


def measured_rt60(response: np.ndarray) -> float:
    """T20: Schroeder's energy decay from -5 to -25 dB, extrapolated to 60 dB."""
    decay = np.cumsum(response[::-1] ** 2)[::-1]
    level = 10 * np.log10(decay / decay[0])
    start, end = np.argmax(level <= -5), np.argmax(level <= -25)
    return 3 * (end - start) / RATE


@pytest.mark.parametrize("rt60", [0.3, 0.8])
def test_a_synthetic_room_decays_60_db_in_its_rt60(rt60):
    response = augment.synthetic_room(np.random.default_rng(3), rt60)
    assert np.argmax(np.abs(response)) == 0  # the direct sound comes first and is the loudest
    assert measured_rt60(response) == pytest.approx(rt60, rel=0.2)


def test_a_simulated_room_comes_from_pyroomacoustics():
    pytest.importorskip("pyroomacoustics")
    response = augment.simulated_room(np.random.default_rng(4), 0.5)
    direct = int(np.argmax(np.abs(response)))
    early = np.sum(response[: max(0, direct - 50)] ** 2)  # its high-pass filter rings a little
    assert early < 0.01 * np.sum(response**2)
    assert 0.2 < measured_rt60(response) < 1.5


def test_reverberation_of_a_click_is_the_room_response_from_the_click_on(speech):
    response = augment.synthetic_room(np.random.default_rng(5), 0.4)
    click = np.zeros(RATE, np.float32)
    click[1000] = 0.5
    heard = augment.reverberate(click, response)
    assert len(heard) == len(click)
    assert np.allclose(heard[1000 : 1000 + len(response)], 0.5 * response, atol=1e-6)
    assert np.all(np.abs(heard[:1000]) < 1e-6)  # FFT convolution: rounding only
    wet = augment.reverberate(speech, response)
    assert lag(wet, speech) == 0


@pytest.mark.parametrize(
    ("name", "bit_rate"),
    [("opus", 16000), ("opus", 24000), ("mp3", 32000), ("amr-nb", 12200), ("mulaw", None)],
)
def test_a_codec_round_trip_keeps_length_and_timing(speech, name, bit_rate):
    coded = augment.codec(speech, name, bit_rate)
    assert len(coded) == len(speech)
    assert abs(lag(coded, speech)) <= 16  # 1 ms
    assert not np.allclose(coded, speech, atol=1e-3)
    assert np.corrcoef(coded, speech)[0, 1] > 0.7


def test_opus_at_a_lower_bit_rate_distorts_more(speech):
    low, high = (augment.codec(speech, "opus", rate) for rate in (8000, 32000))
    assert snr_db(speech, high) > snr_db(speech, low) + 3


def test_telephone_removes_everything_above_4_khz(speech):
    assert band_db(speech, 4000, 8000) > -30  # espeak-ng's speech has energy up there
    for name in ("amr-nb", "mulaw"):
        phone = augment.telephone(speech, name)
        assert len(phone) == len(speech)
        assert abs(lag(phone, speech)) <= 16
        assert band_db(phone, 4200, 8000) < -40
        assert band_db(phone, 0, 200) < -20  # and the low end (band-pass from 300 Hz)


def test_an_unknown_codec_is_an_input_error(speech):
    with pytest.raises(InputError, match="codec 'gsm'"):
        augment.codec(speech, "gsm")
    with pytest.raises(InputError, match="telephone codec 'opus'"):
        augment.telephone(speech, "opus")


def test_gain_and_clipping():
    tone = sine(200, 0.5, RATE, amplitude=0.5)
    assert np.max(np.abs(augment.gain(tone, -6.0))) == pytest.approx(0.5 * 10 ** (-6 / 20), 1e-4)
    clipped = augment.clip(tone, 0.5)
    assert np.max(np.abs(clipped)) == pytest.approx(0.5, 1e-4)
    flat = np.isclose(np.abs(clipped), 0.5, atol=1e-4).mean()
    assert flat > 0.3  # a sine clipped at half its peak is flat a third of the time
    with pytest.raises(InputError, match="clipping fraction 0"):
        augment.clip(tone, 0)


def test_stereo_or_empty_input_is_an_input_error():
    with pytest.raises(InputError, match="mono"):
        augment.gain(np.zeros((10, 2), np.float32), 1)
    with pytest.raises(InputError, match="mono"):
        augment.add_noise(np.zeros(0, np.float32), 10, np.random.default_rng(0))


EVERYTHING = augment.AugmentConfig(
    speed=1, vtlp=1, room=1, noise=1, babble=1, codec=0, telephone=1, clipping=1
)


def test_the_chain_is_deterministic_given_the_generator(speech):
    others = [sine(440, 0.5, RATE)]
    first = augment.augment(speech, np.random.default_rng(7), others=others)
    again = augment.augment(speech, np.random.default_rng(7), others=others)
    other = augment.augment(speech, np.random.default_rng(8), others=others)
    assert first[1] == again[1]
    assert np.array_equal(first[0], again[0])
    assert first[1] != other[1]


def test_the_chain_applies_what_its_config_asks_and_says_so(speech):
    rooms = augment.room_bank(np.random.default_rng(9), 2)
    audio, done = augment.augment(
        speech, np.random.default_rng(10), EVERYTHING, rooms, [sine(440, 0.5, RATE)]
    )
    expected = {"speed", "vtlp", "room", "noise_snr", "babble_snr", "codec", "level_db"}
    assert expected | {"clipping"} == set(done)
    assert done["codec"] == "telephone" and done["room"] in (0, 1)
    assert len(audio) == round(len(speech) / done["speed"])
    assert np.max(np.abs(audio)) == pytest.approx(10 ** (done["level_db"] / 20), rel=1e-3)
    plain, nothing = augment.augment(
        speech,
        np.random.default_rng(10),
        augment.AugmentConfig(
            speed=0, vtlp=0, room=0, noise=0, babble=0, codec=0, telephone=0, clipping=0
        ),
    )
    assert set(nothing) == {"level_db"}
    assert np.allclose(plain / np.max(np.abs(plain)), speech / np.max(np.abs(speech)), atol=1e-5)
