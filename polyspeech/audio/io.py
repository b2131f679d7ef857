"""Decode audio from a path, bytes, a file object or an array into float32 mono at a chosen rate.

WAV, FLAC, OGG and MP3 are read with soundfile (libsndfile); every other container (m4a, mp4,
webm, opus, ...) is decoded in-process with PyAV. Resampling is done with soxr. Every failure is
an :class:`InputError` whose message names the source and the problem.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import soundfile
import soxr

from polyspeech.errors import AudioTooLong, InputError
from polyspeech.files import atomic_binary_file

SAMPLE_RATE = 16000

_UNREADABLE = "not an audio file, or a damaged one (no decoder recognises it)"

AudioSource = str | os.PathLike | bytes | BinaryIO | np.ndarray


@dataclass
class _Decoded:
    samples: np.ndarray  # float32, shape (frames,), mono
    sample_rate: int


def _describe(source: AudioSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, bytes):
        return "<bytes>"
    if isinstance(source, np.ndarray):
        return "<array>"
    return str(getattr(source, "name", "<file object>"))


def _open_bytes(source: AudioSource, name: str) -> BinaryIO:
    """Return a seekable binary stream for a path, bytes or file object; reject empty input."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise InputError(f"{name}: file not found")
        if not path.is_file():
            raise InputError(f"{name}: not a regular file")
        if path.stat().st_size == 0:
            raise InputError(f"{name}: empty file (0 bytes)")
        return open(path, "rb")
    if isinstance(source, bytes):
        if not source:
            raise InputError(f"{name}: empty input (0 bytes)")
        return io.BytesIO(source)
    if not hasattr(source, "read"):
        raise InputError(f"{name}: cannot read audio from a {type(source).__name__}")
    if not source.seekable():
        source = io.BytesIO(source.read())
    start = source.tell()
    if not source.read(1):
        raise InputError(f"{name}: empty input (0 bytes)")
    source.seek(start)
    return source


def _check_length(seconds: float, max_duration: float | None, name: str) -> None:
    if max_duration is not None and seconds > max_duration:
        raise AudioTooLong(
            f"{name}: audio is {seconds:.1f} s long, over the limit of {max_duration:g} s"
        )


def _decode_soundfile(
    stream: BinaryIO,
    name: str,
    offset: float,
    duration: float | None,
    max_duration: float | None,
) -> _Decoded | None:
    """Decode with libsndfile; None when libsndfile does not know the format."""
    start = stream.tell()
    try:
        sound = soundfile.SoundFile(stream)
    except soundfile.LibsndfileError:
        stream.seek(start)
        return None
    with sound:
        rate = sound.samplerate
        first = round(offset * rate)
        count = -1 if duration is None else round(duration * rate)
        wanted = sound.frames - first if count < 0 else count
        _check_length(wanted / rate, max_duration, name)
        if first > sound.frames:
            raise InputError(
                f"{name}: offset {offset:g} s is past the end of the audio "
                f"({sound.frames / rate:.2f} s)"
            )
        try:
            sound.seek(first)
            data = sound.read(count, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError) as error:
            raise InputError(f"{name}: corrupt audio stream ({error})") from None
        if count > 0 and len(data) < count:
            raise InputError(
                f"{name}: asked for {duration:g} s at {offset:g} s but the audio ends "
                f"after {(first + len(data)) / rate:.2f} s"
            )
        # libsndfile reports the length from the header; fewer frames means a truncated stream.
        if count < 0 and first + len(data) < sound.frames:
            raise InputError(
                f"{name}: corrupt audio stream (header promises {sound.frames} frames, "
                f"{first + len(data)} could be decoded)"
            )
    return _Decoded(data.mean(axis=1, dtype=np.float32), rate)


def _decode_pyav(
    stream: BinaryIO,
    name: str,
    offset: float,
    duration: float | None,
    max_duration: float | None,
) -> _Decoded:
    try:
        container = av.open(stream, mode="r")
    except av.error.FFmpegError:
        raise InputError(f"{name}: {_UNREADABLE}") from None
    with container:
        if not container.streams.audio:
            raise InputError(f"{name}: contains no audio stream")
        audio_stream = container.streams.audio[0]
        rate = audio_stream.codec_context.sample_rate or audio_stream.rate
        if container.duration is not None:
            header_seconds = container.duration / av.time_base - offset
            _check_length(
                header_seconds if duration is None else min(duration, header_seconds),
                max_duration,
                name,
            )
        skip = round(offset * rate)
        remaining = None if duration is None else round(duration * rate)
        limit = None if max_duration is None else int(max_duration * rate)
        chunks: list[np.ndarray] = []
        total = 0
        try:
            for frame in container.decode(audio_stream):
                rate = frame.sample_rate
                planes = frame.to_ndarray()
                if frame.format.is_planar:
                    samples = planes.astype(np.float32).mean(axis=0)
                else:
                    channels = len(frame.layout.channels)
                    samples = planes.reshape(-1, channels).astype(np.float32).mean(axis=1)
                if np.issubdtype(planes.dtype, np.integer):
                    samples /= float(np.iinfo(planes.dtype).max) + 1.0
                if skip:
                    dropped = min(skip, len(samples))
                    samples, skip = samples[dropped:], skip - dropped
                if remaining is not None:
                    samples = samples[:remaining]
                    remaining -= len(samples)
                chunks.append(samples)
                total += len(samples)
                if limit is not None and total > limit:
                    _check_length(total / rate, max_duration, name)
                if remaining == 0:
                    break
        except av.error.FFmpegError as error:
            raise InputError(f"{name}: corrupt audio stream ({error})") from None
    if remaining:
        raise InputError(
            f"{name}: asked for {duration:g} s at {offset:g} s but the audio ends "
            f"after {offset + total / rate:.2f} s"
        )
    if skip:
        raise InputError(f"{name}: offset {offset:g} s is past the end of the audio")
    if not chunks:
        raise InputError(f"{name}: {_UNREADABLE}; no audio frames could be decoded")
    return _Decoded(np.concatenate(chunks), rate)


def _from_array(array: np.ndarray, source_rate: int | None) -> _Decoded:
    if source_rate is None:
        raise InputError("<array>: an array needs its sample rate (pass source_rate=...)")
    if array.ndim == 2:
        array = array.mean(axis=1)  # (frames, channels), as soundfile returns it
    elif array.ndim != 1:
        raise InputError(
            f"<array>: expected shape (frames,) or (frames, channels), got {array.shape}"
        )
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float32) / (float(np.iinfo(array.dtype).max) + 1.0)
    elif not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"<array>: unsupported sample type {array.dtype}")
    return _Decoded(np.ascontiguousarray(array, dtype=np.float32), int(source_rate))


def load_audio(
    source: AudioSource,
    sample_rate: int = SAMPLE_RATE,
    *,
    source_rate: int | None = None,
    offset: float = 0.0,
    duration: float | None = None,
    max_duration: float | None = None,
) -> np.ndarray:
    """Decode ``source`` to float32 mono samples at ``sample_rate``.

    ``source`` is a path, the bytes of a file, a binary file object, or a numpy array of shape
    (frames,) or (frames, channels) whose rate is given as ``source_rate``. ``offset`` and
    ``duration`` (seconds) select a part of the file. Audio longer than ``max_duration`` seconds
    is refused before it is decoded where the header tells its length. Raises
    :class:`InputError` for anything that is not usable audio.
    """
    name = _describe(source)
    if isinstance(source, np.ndarray):
        decoded = _from_array(source, source_rate)
        first = round(offset * decoded.sample_rate)
        last = None if duration is None else first + round(duration * decoded.sample_rate)
        decoded.samples = decoded.samples[first:last]
        _check_length(len(decoded.samples) / decoded.sample_rate, max_duration, name)
    else:
        stream = _open_bytes(source, name)
        try:
            decoded = _decode_soundfile(stream, name, offset, duration, max_duration)
            if decoded is None:
                decoded = _decode_pyav(stream, name, offset, duration, max_duration)
        finally:
            if isinstance(source, (str, os.PathLike)):
                stream.close()
    samples = decoded.samples
    if samples.size == 0:
        raise InputError(f"{name}: contains no audio samples (zero length)")
    if not np.isfinite(samples).all():
        raise InputError(f"{name}: contains NaN or infinite samples")
    if decoded.sample_rate != sample_rate:
        samples = soxr.resample(samples, decoded.sample_rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(samples, dtype=np.float32)


def audio_duration(path: str | os.PathLike) -> float:
    """Length of an audio file in seconds, from its header where it has one (no full decode)."""
    name = str(path)
    stream = _open_bytes(path, name)
    with stream:
        try:
            info = soundfile.info(stream)
            return info.frames / info.samplerate
        except soundfile.LibsndfileError:
            stream.seek(0)
        try:
            with av.open(stream, mode="r") as container:
                if not container.streams.audio:
                    raise InputError(f"{name}: contains no audio stream")
                if container.duration is not None:
                    return container.duration / av.time_base
        except av.error.FFmpegError:
            raise InputError(f"{name}: {_UNREADABLE}") from None
    return len(load_audio(path)) / SAMPLE_RATE


AUDIO_FORMATS = {".flac": "FLAC", ".wav": "WAV"}


def write_audio(path: str | os.PathLike, samples: np.ndarray) -> None:
    """Write 16 kHz samples as 16-bit FLAC or WAV (by the suffix); the file appears only when
    complete."""
    path = Path(path)
    kind = AUDIO_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"{path}: write .flac or .wav, not {path.suffix or 'no suffix'}")
    if not path.parent.is_dir():
        raise InputError(f"{path}: its folder does not exist")
    with atomic_binary_file(path) as stream:
        soundfile.write(stream, samples, SAMPLE_RATE, subtype="PCM_16", format=kind)
