"""Decode audio from a path, bytes, a file object or an array into float32 mono at a chosen rate.

WAV, FLAC, AIFF and libsndfile's other uncompressed or lossless formats are read with soundfile
(libsndfile); MP3, Ogg and every other container (m4a, mp4, webm, opus, ...) are decoded
in-process with PyAV. Resampling is done with soxr. Every failure is an :class:`InputError` whose
message names the source and the problem.

Audio cut short is refused; a header's length is trusted only as far as it is exact:

- PCM WAV, AIFF (their data chunk's size) and FLAC (STREAMINFO's sample count) state their
  length exactly: any frame missing is a corrupt stream. A WAV or AIFF file cut short still opens
  in libsndfile, which shortens its length to the bytes there, so their chunk is read here. A
  data size of 0 or from 0x7FFFF000 up is the placeholder streaming writers leave (SoX, ffmpeg
  to a pipe), and is not checked.
- An MP3's length is an estimate: with a Xing, Info or VBRI frame, the encoder's frame count less
  its delay and padding, which a recorder can get wrong (a phone's 178 s talk promised 2845600
  frames and held 2843712, 0.07% fewer); without one, the file's size over its first frame's
  bitrate. PyAV decodes every frame there is (libsndfile stops at the estimate: it kept 1.5 s of
  a 10 s VBR MP3 whose Xing frame it could not read). An MP3 with a frame count is refused when
  it decodes short of that count by more than :data:`ESTIMATE_SHORTFALL` of it and more than
  :data:`ESTIMATE_SLACK` seconds (1% and 0.25 s): one cut in half is caught, a count a few
  frames too high is not. Without a count nothing tells a cut MP3 from a short one.
- The other containers (Ogg's last granule position, mp4's index, a WebM duration where one is
  written) are decoded to the end of what is there: a cut Ogg file ends on a whole page whose
  position matches, and AAC in ADTS has only a bitrate estimate.
"""

from __future__ import annotations

import io
import os
import re
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

ESTIMATE_SHORTFALL = 0.01  # of an MP3's counted length: decoding less is a cut file
ESTIMATE_SLACK = 0.25  # seconds an MP3 with a frame count may decode short, however short it is

# libsndfile formats whose length is an estimate: PyAV decodes them to their end.
_ESTIMATED = {"MP3", "OGG"}
# Bytes per sample of the PCM subtypes, to turn a WAV or AIFF data chunk's size into frames.
_SAMPLE_BYTES = {
    "PCM_S8": 1, "PCM_U8": 1, "ULAW": 1, "ALAW": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4,
    "FLOAT": 4, "DOUBLE": 8,
}  # fmt: skip
_UNSIZED = 0x7FFFF000  # data sizes from here up (and 0) stand for "to the end of the file"
_FRAME_SYNC = re.compile(rb"\xff[\xe0-\xff]")

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


def _pcm_chunk_bytes(stream: BinaryIO) -> int | None:
    """The bytes of audio a WAV or AIFF header declares; None for other files and for a size
    left to the end of the file."""
    start = stream.tell()
    try:
        head = stream.read(12)
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            order, wanted, extra = "little", b"data", 0
        elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            order, wanted, extra = "big", b"SSND", 8  # SSND's size counts its offset and block
        else:
            return None
        end = stream.seek(0, io.SEEK_END)
        position = start + 12
        while position + 8 <= end:
            stream.seek(position)
            chunk = stream.read(8)
            size = int.from_bytes(chunk[4:], order)
            if chunk[:4] == wanted:
                return None if size == 0 or size >= _UNSIZED else size - extra
            position += 8 + size + (size & 1)
        return None
    finally:
        stream.seek(start)


def _counts_mp3_frames(stream: BinaryIO) -> bool:
    """Whether the stream's first MPEG audio frame (after any ID3v2 tag) is a Xing, Info or VBRI
    frame, where an encoder writes the number of frames."""
    start = stream.tell()
    try:
        head = stream.read(10)
        if head[:3] == b"ID3" and len(head) == 10:
            size = 10 + sum((byte & 0x7F) << (7 * (3 - i)) for i, byte in enumerate(head[6:10]))
            stream.seek(start + size + (10 if head[5] & 0x10 else 0))  # 0x10: a footer follows
        else:
            stream.seek(start)
        data = stream.read(4096)
    finally:
        stream.seek(start)
    sync = _FRAME_SYNC.search(data)
    # The tag follows the frame header and side information: 4 + 9, 17 or 32 bytes in, or 36.
    return sync is not None and any(
        tag in data[sync.start() : sync.start() + 48] for tag in (b"Xing", b"Info", b"VBRI")
    )


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
    """Decode with libsndfile; None when libsndfile does not know the format or its length is
    an estimate (PyAV decodes those)."""
    start = stream.tell()
    declared_bytes = _pcm_chunk_bytes(stream)
    try:
        sound = soundfile.SoundFile(stream)
    except soundfile.LibsndfileError:
        stream.seek(start)
        return None
    if sound.format in _ESTIMATED:
        sound.close()
        stream.seek(start)
        return None
    with sound:
        rate = sound.samplerate
        sample_bytes = _SAMPLE_BYTES.get(sound.subtype)
        if declared_bytes is not None and sample_bytes is not None:
            promised = declared_bytes // (sample_bytes * sound.channels)
            if promised > sound.frames:
                raise InputError(
                    f"{name}: corrupt audio stream (cut short: header promises {promised} "
                    f"frames, the file holds {sound.frames})"
                )
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
    counted = _counts_mp3_frames(stream)
    try:
        container = av.open(stream, mode="r")
    except av.error.FFmpegError:
        raise InputError(f"{name}: {_UNREADABLE}") from None
    with container:
        if not container.streams.audio:
            raise InputError(f"{name}: contains no audio stream")
        audio_stream = container.streams.audio[0]
        rate = audio_stream.codec_context.sample_rate or audio_stream.rate
        promised = None  # an MP3's frame count: the only estimate a shortfall is checked against
        if counted and container.format.name == "mp3" and container.duration is not None:
            promised = container.duration / av.time_base
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
    if promised is not None and duration is None:
        decoded = offset + total / rate
        if promised - decoded > max(ESTIMATE_SHORTFALL * promised, ESTIMATE_SLACK):
            raise InputError(
                f"{name}: corrupt audio stream (cut short: its frame count promises "
                f"{promised:.2f} s, {decoded:.2f} s could be decoded)"
            )
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
            if info.format not in _ESTIMATED:
                return info.frames / info.samplerate
        except soundfile.LibsndfileError:
            pass
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
    with atomic_binary_file(path) as stream:
        soundfile.write(stream, samples, SAMPLE_RATE, subtype="PCM_16", format=kind)
