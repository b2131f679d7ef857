import io

import av
import numpy as np
import pytest
import soundfile

from polyspeech.audio import audio_duration, load_audio
from polyspeech.errors import InputError
from tests.conftest import dominant_frequency, sine


def write_with_pyav(path, samples, rate, container, codec):
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)


@pytest.mark.parametrize("suffix", ["wav", "flac", "ogg", "mp3"])
def test_soundfile_formats_decode_to_16k_mono(tmp_path, suffix):
    path = tmp_path / f"tone.{suffix}"
    soundfile.write(path, sine(440, 2.0, 44100), 44100)
    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) / 16000 - 2.0) < 0.06
    assert abs(dominant_frequency(samples, 16000) - 440) < 2


@pytest.mark.parametrize(
    ("suffix", "container", "codec", "rate"),
    [
        ("m4a", "mp4", "aac", 44100),
        ("webm", "webm", "libopus", 48000),
        ("mp4", "mp4", "aac", 22050),
    ],
)
def test_other_containers_decode_with_pyav(tmp_path, suffix, container, codec, rate):
    path = tmp_path / f"tone.{suffix}"
    write_with_pyav(path, sine(1000, 2.0, rate), rate, container, codec)
    samples = load_audio(path)
    assert abs(len(samples) / 16000 - 2.0) < 0.1
    assert abs(dominant_frequency(samples, 16000) - 1000) < 3
    assert abs(audio_duration(path) - 2.0) < 0.1


def test_stereo_is_mixed_down(tmp_path):
    left = sine(440, 1.0, 16000, amplitude=0.8)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, np.zeros_like(left)], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), left / 2, atol=1e-6)


def test_bytes_file_object_and_array_give_the_same_samples(tmp_path):
    tone = sine(300, 1.5, 22050)
    path = tmp_path / "tone.flac"
    soundfile.write(path, tone, 22050)
    from_path = load_audio(path)
    np.testing.assert_array_equal(load_audio(path.read_bytes()), from_path)
    with open(path, "rb") as stream:
        np.testing.assert_array_equal(load_audio(stream), from_path)
    from_array = load_audio(tone, source_rate=22050)
    np.testing.assert_allclose(from_array, from_path, atol=1e-4)  # FLAC is 16-bit
    int16 = (tone * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio(int16, source_rate=22050), from_path, atol=1e-3)


def test_array_needs_its_rate():
    with pytest.raises(InputError, match="sample rate"):
        load_audio(np.zeros(100, np.float32))


def test_offset_and_duration_select_a_part(tmp_path):
    ramp = np.linspace(-0.9, 0.9, 32000).astype(np.float32)
    path = tmp_path / "ramp.wav"
    soundfile.write(path, ramp, 16000, subtype="FLOAT")
    part = load_audio(path, offset=0.5, duration=1.0)
    np.testing.assert_array_equal(part, ramp[8000:24000])
    with pytest.raises(InputError, match=r"ends after 2\.00 s"):
        load_audio(path, offset=1.5, duration=1.0)


def write_mp3(path, seconds=10.0):
    """A VBR MP3 of a tone at 16 kHz (576 samples a frame), with libsndfile's Xing frame."""
    soundfile.write(path, sine(440, seconds, 16000), 16000, format="MP3")
    return path.read_bytes()


def with_frame_count(data: bytes, extra: int) -> bytes:
    """The MP3 ``data`` with its Xing frame claiming ``extra`` more frames than it holds."""
    tag = data.index(b"Xing")
    assert data[tag + 7] & 1  # the flags say a frame count follows them
    count = int.from_bytes(data[tag + 8 : tag + 12], "big")
    return data[: tag + 8] + (count + extra).to_bytes(4, "big") + data[tag + 12 :]


def test_mp3_whose_frame_count_is_a_little_high_decodes_whole(tmp_path):
    # As a phone's recorder wrote one: 3 frames (0.11 s) more than there are.
    path = tmp_path / "talk.mp3"
    path.write_bytes(with_frame_count(write_mp3(path), 3))
    assert 10.0 <= len(load_audio(path)) / 16000 < 10.05


def test_mp3_decodes_past_a_frame_count_too_low(tmp_path):
    path = tmp_path / "talk.mp3"
    path.write_bytes(with_frame_count(write_mp3(path), -50))  # 1.8 s fewer
    assert abs(len(load_audio(path)) / 16000 - 10.0) < 0.05


def test_vbr_mp3_without_frame_count_decodes_to_its_end(tmp_path):
    # libsndfile took this file's length from its first frame's bitrate and stopped at 1.5 s.
    path = tmp_path / "talk.mp3"
    path.write_bytes(write_mp3(path).replace(b"Xing", b"None", 1))
    assert 10.0 <= len(load_audio(path)) / 16000 < 10.15  # with the encoder's delay and padding


@pytest.mark.parametrize("size", [0xFFFFFFFF, 0x7FFFF000])
def test_wav_with_a_streaming_placeholder_size_decodes(tmp_path, size):
    path = tmp_path / "stream.wav"
    soundfile.write(path, sine(440, 1.0, 16000), 16000)
    data = path.read_bytes()
    at = data.index(b"data") + 4
    path.write_bytes(data[:at] + size.to_bytes(4, "little") + data[at + 4 :])
    assert len(load_audio(path)) == 16000


def test_wav_with_a_chunk_after_its_audio_decodes(tmp_path):
    path = tmp_path / "tagged.wav"
    soundfile.write(path, sine(440, 1.0, 16000), 16000)
    path.write_bytes(path.read_bytes() + b"LIST\x04\x00\x00\x00INFO")
    assert len(load_audio(path)) == 16000


# Bad inputs: each is a real file made here; the error names the file and the problem.


def make_missing(tmp_path):
    return tmp_path / "missing.wav"


def make_empty(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    return path


def make_zero_length(tmp_path):
    path = tmp_path / "zero.wav"
    soundfile.write(path, np.zeros((0, 1), np.float32), 16000)
    return path


def make_text_renamed_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are meeting notes, not audio\n" * 20)
    return path


def make_truncated_flac(tmp_path):
    whole = tmp_path / "whole.flac"
    soundfile.write(whole, sine(440, 3.0, 16000), 16000)
    path = tmp_path / "truncated.flac"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return path


def cut(tmp_path, suffix, fraction):
    """A 3 s tone written as ``suffix``, then all but its first ``fraction`` of bytes cut off."""
    whole = tmp_path / f"whole.{suffix}"
    soundfile.write(whole, sine(440, 3.0, 16000), 16000)
    path = tmp_path / f"cut.{suffix}"
    path.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * fraction)])
    return path


def make_flac_cut_at_30(tmp_path):
    return cut(tmp_path, "flac", 0.3)


def make_truncated_wav(tmp_path):
    return cut(tmp_path, "wav", 0.9)


def make_truncated_aiff(tmp_path):
    return cut(tmp_path, "aiff", 0.5)


def make_truncated_mp3(tmp_path):
    return cut(tmp_path, "mp3", 0.5)


def make_truncated_m4a(tmp_path):
    whole = tmp_path / "whole.m4a"
    write_with_pyav(whole, sine(440, 3.0, 44100), 44100, "mp4", "aac")
    path = tmp_path / "truncated.m4a"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return path


def write_with_sample(tmp_path, name, value):
    samples = sine(440, 1.0, 16000)
    samples[500] = value
    path = tmp_path / name
    soundfile.write(path, samples, 16000, subtype="FLOAT")
    return path


def make_nan(tmp_path):
    return write_with_sample(tmp_path, "nan.wav", np.nan)


def make_inf(tmp_path):
    return write_with_sample(tmp_path, "inf.wav", -np.inf)


def make_directory(tmp_path):
    path = tmp_path / "folder.wav"
    path.mkdir()
    return path


BAD_INPUTS = [
    (make_missing, "file not found"),
    (make_empty, "empty file"),
    (make_zero_length, "no audio samples"),
    (make_text_renamed_wav, "not an audio file"),
    (make_truncated_flac, "corrupt audio stream"),
    (make_flac_cut_at_30, "corrupt audio stream"),
    (make_truncated_wav, "corrupt audio stream (cut short: header promises 48000 frames"),
    (make_truncated_aiff, "corrupt audio stream (cut short: header promises 48000 frames"),
    (make_truncated_mp3, "corrupt audio stream (cut short: its frame count promises 3.00 s"),
    (make_truncated_m4a, "not an audio file, or a damaged one"),
    (make_nan, "NaN or infinite"),
    (make_inf, "NaN or infinite"),
    (make_directory, "not a regular file"),
]


@pytest.mark.parametrize(("make", "problem"), BAD_INPUTS)
def test_bad_input_raises_input_error_naming_file(tmp_path, make, problem):
    path = make(tmp_path)
    with pytest.raises(InputError) as error:
        load_audio(path)
    assert str(path) in str(error.value)
    assert problem in str(error.value)


def test_empty_bytes_and_stream_are_refused():
    with pytest.raises(InputError, match="empty input"):
        load_audio(b"")
    with pytest.raises(InputError, match="empty input"):
        load_audio(io.BytesIO(b""))


@pytest.mark.parametrize(("suffix", "writer"), [("flac", "soundfile"), ("m4a", "pyav")])
def test_audio_over_the_limit_is_refused(tmp_path, suffix, writer):
    path = tmp_path / f"long.{suffix}"
    if writer == "soundfile":
        soundfile.write(path, sine(440, 5.0, 16000), 16000)
    else:
        write_with_pyav(path, sine(440, 5.0, 44100), 44100, "mp4", "aac")
    with pytest.raises(InputError, match=r"long.*over the limit of 4 s"):
        load_audio(path, max_duration=4)
    assert len(load_audio(path, max_duration=6)) > 0
