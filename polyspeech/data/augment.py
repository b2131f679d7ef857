"""Acoustic variety for training audio: speed perturbation, vocal-tract-length warping, rooms,
noise at a chosen SNR, babble, low bit-rate codecs and the telephone band, level and clipping.

Every transform takes 16 kHz float32 mono samples and returns new float32 samples; whatever it
draws comes from the numpy ``Generator`` it is given, so the same generator state gives the same
audio. Only :func:`speed_perturb` changes the length (by the factor); the others keep the
speech where it was, sample for sample (reverberation is aligned on the direct sound, codec
delays are taken out). :func:`augment` chains them at random as :class:`AugmentConfig` says and
tells what it did.

Rooms: :func:`simulated_room` is an image-source shoebox from ``pyroomacoustics`` (optional:
``pip install pyroomacoustics``); :func:`synthetic_room` needs nothing, a direct sound and an
exponentially decaying noise tail. A few hundred of either, made once by :func:`room_bank`,
serve a whole corpus.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import av
import numpy as np
import soxr
from scipy import signal

from polyspeech.audio import SAMPLE_RATE, load_audio
from polyspeech.errors import DependencyError, InputError

_EPS = 1e-12

# name: (PyAV codec, container, sample rate it runs at)
CODECS = {
    "opus": ("libopus", "ogg", 16000),
    "mp3": ("libmp3lame", "mp3", 16000),
    "amr-nb": ("libopencore_amrnb", "amr", 8000),
    "mulaw": ("pcm_mulaw", "wav", 8000),
}
# Samples at 16 kHz by which a codec's decoded audio lags its input (measured with PyAV 18;
# Opus and MP3 carry their own priming counts, which PyAV's decoders honour).
_CODEC_DELAY = {"amr-nb": 80}
AMR_RATES = (4750, 5150, 5900, 6700, 7400, 7950, 10200, 12200)  # AMR-NB's eight modes


def _mono(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1 or not samples.size:
        raise InputError(f"augmentation needs mono samples, got shape {samples.shape}")
    return samples


def power(samples: np.ndarray) -> float:
    """Mean square of ``samples``."""
    return float(np.mean(np.square(samples, dtype=np.float64)))


def speed_perturb(samples: np.ndarray, factor: float) -> np.ndarray:
    """Played ``factor`` times faster, pitch and formants with it (Kaldi's speed
    perturbation): ``round(len / factor)`` samples."""
    samples = _mono(samples)
    if not 0.5 <= factor <= 2.0:
        raise InputError(f"speed factor {factor}: use 0.5 to 2")
    out = soxr.resample(samples, SAMPLE_RATE * factor, SAMPLE_RATE, quality="HQ")
    return _fit(out.astype(np.float32), round(len(samples) / factor))


def _fit(samples: np.ndarray, length: int) -> np.ndarray:
    """Cut or zero-pad to exactly ``length`` samples."""
    if len(samples) >= length:
        return samples[:length]
    return np.concatenate([samples, np.zeros(length - len(samples), samples.dtype)])


def vtlp(samples: np.ndarray, alpha: float, boundary_hz: float = 4800.0) -> np.ndarray:
    """Vocal-tract-length perturbation on the waveform: frequencies scaled by Jaitly and
    Hinton's piecewise-linear warp, by ``alpha`` up to the boundary (formants and pitch with
    them; above 1, a shorter vocal tract), then linearly to the Nyquist frequency, which stays;
    timing stays. A phase vocoder: each output bin takes the magnitude found at the frequency
    the warp sends to it, and a phase that advances at that frequency's warped rate."""
    samples = _mono(samples)
    if not 0.7 <= alpha <= 1.4:
        raise InputError(f"VTLP alpha {alpha}: use 0.7 to 1.4")
    size, hop = 512, 128
    nyquist = SAMPLE_RATE / 2
    _, _, spectrum = signal.stft(samples, SAMPLE_RATE, nperseg=size, noverlap=size - hop)
    freqs = np.linspace(0.0, nyquist, spectrum.shape[0])
    knee = boundary_hz * min(alpha, 1.0) / alpha
    slope = (nyquist - boundary_hz * min(alpha, 1.0)) / (nyquist - knee)

    def warp(hz: np.ndarray) -> np.ndarray:  # also beyond 0 and Nyquist, where phases may point
        return np.where(hz <= knee, hz * alpha, nyquist - slope * (nyquist - hz))

    warped = warp(freqs)
    # each bin's instantaneous frequency (Hz) from its phase advance between frames
    phase = np.angle(spectrum)
    expected = 2 * np.pi * hop * freqs / SAMPLE_RATE
    advance = np.diff(phase, axis=1) - expected[:, None]
    advance = (advance + np.pi) % (2 * np.pi) - np.pi
    instant = (expected[:, None] + advance) * SAMPLE_RATE / (2 * np.pi * hop)
    # output bin f is made of what the input had at the frequency the warp sends to f
    position = np.interp(freqs, warped, freqs) / freqs[1]
    below = np.minimum(position.astype(int), len(freqs) - 2)
    weight = (position - below)[:, None]
    magnitude = np.abs(spectrum)
    moved = magnitude[below] * (1 - weight) + magnitude[below + 1] * weight
    rate = warp(instant[below] * (1 - weight) + instant[below + 1] * weight)
    start = phase[np.rint(position).astype(int).clip(max=len(freqs) - 1), :1]
    steps = 2 * np.pi * hop * rate / SAMPLE_RATE
    phases = np.concatenate([start, start + np.cumsum(steps, axis=1)], axis=1)
    _, out = signal.istft(
        moved * np.exp(1j * phases), SAMPLE_RATE, nperseg=size, noverlap=size - hop
    )
    return _fit(out.astype(np.float32), len(samples))


def add_noise(
    samples: np.ndarray,
    snr_db: float,
    rng: np.random.Generator,
    noise: np.ndarray | None = None,
) -> np.ndarray:
    """``noise`` (white Gaussian where None; a recording is looped and started at a random
    point) added ``snr_db`` below the power of ``samples``."""
    samples = _mono(samples)
    if noise is None:
        noise = rng.standard_normal(len(samples)).astype(np.float32)
    else:
        noise = _excerpt(_mono(noise), len(samples), rng)
    noise_power = power(noise)
    if noise_power < _EPS:
        raise InputError("the noise is silent: nothing to add at an SNR")
    gain = np.sqrt(power(samples) / (noise_power * 10 ** (snr_db / 10)))
    return (samples + gain * noise).astype(np.float32)


def _excerpt(source: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` samples of ``source`` looped, from a random starting point."""
    start = int(rng.integers(len(source)))
    repeats = -(-(start + length) // len(source))
    return np.tile(source, repeats)[start : start + length]


def babble(
    samples: np.ndarray,
    others: Sequence[np.ndarray],
    snr_db: float,
    rng: np.random.Generator,
    talkers: int = 4,
) -> np.ndarray:
    """Background talk: ``talkers`` clips drawn from ``others`` (other speech), each looped
    from a random point and brought to the same power, summed, and added ``snr_db`` below
    ``samples``."""
    if not others:
        raise InputError("babble needs other clips to talk in the background")
    if talkers < 1:
        raise InputError(f"babble needs at least one talker, got {talkers}")
    length = len(_mono(samples))
    chosen = rng.choice(len(others), size=talkers, replace=len(others) < talkers)
    crowd = np.zeros(length, np.float32)
    for index in chosen:
        voice = _excerpt(_mono(others[index]), length, rng)
        crowd += voice / np.sqrt(max(power(voice), _EPS))
    return add_noise(samples, snr_db, rng, crowd)


def synthetic_room(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A room impulse response without geometry: the direct sound, then Gaussian noise whose
    level falls 60 dB in ``rt60`` seconds, starting 2-10 ms later (the first reflection),
    its energy 0-10 dB below the direct sound's scaled by the decay."""
    if not 0.05 <= rt60 <= 3.0:
        raise InputError(f"RT60 {rt60} s: use 0.05 to 3")
    length = int(rt60 * SAMPLE_RATE)
    gap = int(rng.uniform(0.002, 0.010) * SAMPLE_RATE)
    t = np.arange(length - gap) / SAMPLE_RATE
    tail = rng.standard_normal(len(t)) * np.exp(-6.9078 * t / rt60)  # ln(1000): 60 dB
    tail *= np.sqrt(10 ** (-rng.uniform(0.0, 10.0) / 10) / max(float(np.sum(tail**2)), _EPS))
    response = np.zeros(length, np.float32)
    response[0] = 1.0
    response[gap:] = tail
    return response


def simulated_room(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A shoebox room's impulse response by the image-source method (``pyroomacoustics``):
    walls 3-10 x 3-8 x 2.4-4 m absorbing as Sabine's formula gives ``rt60``, source and
    microphone at random at least 0.5 m from the walls."""
    try:
        import pyroomacoustics
    except ImportError:
        raise DependencyError(
            "simulated rooms need pyroomacoustics: pip install pyroomacoustics"
        ) from None
    if not 0.05 <= rt60 <= 3.0:
        raise InputError(f"RT60 {rt60} s: use 0.05 to 3")
    size = rng.uniform([3.0, 3.0, 2.4], [10.0, 8.0, 4.0])
    try:
        absorption, order = pyroomacoustics.inverse_sabine(rt60, size)
    except ValueError:  # too reverberant for so small a room: the largest room of the range
        size = np.array([10.0, 8.0, 4.0])
        absorption, order = pyroomacoustics.inverse_sabine(rt60, size)
    room = pyroomacoustics.ShoeBox(
        size, fs=SAMPLE_RATE, materials=pyroomacoustics.Material(absorption), max_order=order
    )
    room.add_source(rng.uniform(0.5, size - 0.5))
    room.add_microphone(rng.uniform(0.5, size - 0.5))
    room.compute_rir()
    return np.asarray(room.rir[0][0], np.float32)


def room_bank(
    rng: np.random.Generator, count: int, kind: str = "synthetic", rt60: tuple = (0.2, 0.9)
) -> list[np.ndarray]:
    """``count`` impulse responses of ``kind`` (synthetic or simulated), RT60 uniform in
    ``rt60`` seconds."""
    if kind not in ("synthetic", "simulated"):
        raise InputError(f"room kind {kind!r}: synthetic or simulated")
    make = synthetic_room if kind == "synthetic" else simulated_room
    return [make(rng, float(rng.uniform(*rt60))) for _ in range(count)]


def reverberate(samples: np.ndarray, response: np.ndarray) -> np.ndarray:
    """``samples`` heard in the room of impulse response ``response``, aligned on its direct
    sound (its largest peak) and cut to the input's length, at the input's peak level."""
    samples = _mono(samples)
    response = _mono(response)
    direct = int(np.argmax(np.abs(response)))
    wet = signal.fftconvolve(samples, response)[direct : direct + len(samples)]
    wet = _fit(wet.astype(np.float32), len(samples))
    peak = float(np.abs(wet).max())
    return wet * (float(np.abs(samples).max()) / peak) if peak > _EPS else wet


def codec(samples: np.ndarray, name: str, bit_rate: int | None = None) -> np.ndarray:
    """``samples`` through the lossy codec ``name`` (:data:`CODECS`: opus, mp3, amr-nb,
    mulaw) and back with PyAV, at 16 kHz, as long as the input and aligned with it.
    ``bit_rate`` in bits per second (Opus 6000-64000, MP3 8000-64000, AMR-NB one of
    :data:`AMR_RATES`; μ-law has one rate)."""
    samples = _mono(samples)
    if name not in CODECS:
        raise InputError(f"codec {name!r}: use one of {', '.join(CODECS)}")
    codec_name, container, rate = CODECS[name]
    audio = samples if rate == SAMPLE_RATE else soxr.resample(samples, SAMPLE_RATE, rate, "HQ")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as output:
        stream = output.add_stream(codec_name, rate=rate)
        stream.layout = "mono"
        if bit_rate is not None:
            stream.bit_rate = int(bit_rate)
        frame = av.AudioFrame.from_ndarray(
            np.clip(audio, -1.0, 1.0).astype(np.float32)[None], format="flt", layout="mono"
        )
        frame.sample_rate = rate
        for packet in (*stream.encode(frame), *stream.encode(None)):
            output.mux(packet)
    decoded = load_audio(buffer.getvalue())
    delay = _CODEC_DELAY.get(name, 0)
    return _fit(decoded[delay:], len(samples))


def telephone(
    samples: np.ndarray, name: str = "amr-nb", bit_rate: int | None = 12200
) -> np.ndarray:
    """A phone call: 300-3400 Hz band-pass, then an 8 kHz codec (AMR-NB as in GSM and 3G, or
    G.711 μ-law), back at 16 kHz with nothing above 4 kHz."""
    if CODECS.get(name, ("", "", 0))[2] != 8000:
        raise InputError(f"telephone codec {name!r}: amr-nb or mulaw")
    sections = signal.butter(4, [300, 3400], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    band = signal.sosfiltfilt(sections, _mono(samples)).astype(np.float32)
    return codec(band, name, None if name == "mulaw" else bit_rate)


def gain(samples: np.ndarray, db: float) -> np.ndarray:
    """``samples`` ``db`` louder (negative: quieter); nothing is clipped here."""
    return (_mono(samples) * np.float32(10 ** (db / 20))).astype(np.float32)


def clip(samples: np.ndarray, fraction: float) -> np.ndarray:
    """Overdriven: hard-clipped at ``fraction`` (0-1] of the peak, then back to that peak."""
    samples = _mono(samples)
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"clipping fraction {fraction}: use above 0 up to 1")
    peak = float(np.abs(samples).max())
    if peak < _EPS:
        return samples.copy()
    return (np.clip(samples, -fraction * peak, fraction * peak) / fraction).astype(np.float32)


@dataclass(frozen=True)
class AugmentConfig:
    """How often each transform is applied (probabilities) and the ranges its settings are
    drawn from, uniformly."""

    speed: float = 0.5
    speed_range: tuple[float, float] = (0.9, 1.1)
    vtlp: float = 0.3
    vtlp_range: tuple[float, float] = (0.9, 1.1)
    room: float = 0.3
    noise: float = 0.4
    noise_snr: tuple[float, float] = (5.0, 30.0)
    babble: float = 0.2
    babble_snr: tuple[float, float] = (5.0, 20.0)
    babble_talkers: tuple[int, int] = (2, 6)
    codec: float = 0.3
    opus_bit_rate: tuple[int, int] = (16000, 24000)
    mp3_bit_rate: tuple[int, int] = (24000, 48000)
    telephone: float = 0.15
    level_db: tuple[float, float] = (-25.0, -3.0)  # peak level, dB below full scale
    clipping: float = 0.05
    clipping_fraction: tuple[float, float] = (0.3, 0.8)


def augment(
    samples: np.ndarray,
    rng: np.random.Generator,
    config: AugmentConfig = AugmentConfig(),
    rooms: Sequence[np.ndarray] = (),
    others: Sequence[np.ndarray] = (),
) -> tuple[np.ndarray, dict]:
    """``samples`` through a random chain of the transforms (speed, VTLP, room, noise, babble,
    codec or telephone, level, clipping, in that order): each applied with its probability in
    ``config``. Rooms are drawn from ``rooms`` (a :func:`room_bank`), else made synthetic;
    babble is made of ``others`` and skipped without them. Returns the audio and the settings
    used, e.g. ``{"speed": 0.93, "noise_snr": 17.2, "codec": "opus", "bit_rate": 18000, ...}``."""
    done: dict = {}
    audio = _mono(samples)
    if rng.random() < config.speed:
        done["speed"] = round(float(rng.uniform(*config.speed_range)), 3)
        audio = speed_perturb(audio, done["speed"])
    if rng.random() < config.vtlp:
        done["vtlp"] = round(float(rng.uniform(*config.vtlp_range)), 3)
        audio = vtlp(audio, done["vtlp"])
    if rng.random() < config.room:
        if rooms:
            done["room"] = int(rng.integers(len(rooms)))
            response = rooms[done["room"]]
        else:
            done["room"] = "synthetic"
            response = synthetic_room(rng, float(rng.uniform(0.2, 0.9)))
        audio = reverberate(audio, response)
    if rng.random() < config.noise:
        done["noise_snr"] = round(float(rng.uniform(*config.noise_snr)), 1)
        audio = add_noise(audio, done["noise_snr"], rng)
    if others and rng.random() < config.babble:
        done["babble_snr"] = round(float(rng.uniform(*config.babble_snr)), 1)
        talkers = int(rng.integers(config.babble_talkers[0], config.babble_talkers[1] + 1))
        audio = babble(audio, others, done["babble_snr"], rng, talkers)
    audio = audio * np.float32(0.9 / max(float(np.abs(audio).max()), _EPS))  # codecs clip at 1
    draw = rng.random()
    if draw < config.telephone:
        done["codec"] = "telephone"
        audio = telephone(audio)
    elif draw < config.telephone + config.codec:
        done["codec"] = "opus" if rng.random() < 0.5 else "mp3"
        bounds = config.opus_bit_rate if done["codec"] == "opus" else config.mp3_bit_rate
        done["bit_rate"] = int(rng.integers(bounds[0] // 1000, bounds[1] // 1000 + 1)) * 1000
        audio = codec(audio, done["codec"], done["bit_rate"])
    done["level_db"] = round(float(rng.uniform(*config.level_db)), 1)
    audio = gain(audio / max(float(np.abs(audio).max()), _EPS), done["level_db"])
    if rng.random() < config.clipping:
        done["clipping"] = round(float(rng.uniform(*config.clipping_fraction)), 2)
        audio = clip(audio, done["clipping"])
    return audio.astype(np.float32), done
