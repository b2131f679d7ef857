"""Our SAN-M encoder and Paraformer front end against the `funasr` package's, same weights and
the same audio.

Without torchaudio (as here: its only build pulls CUDA) funasr computes the fbank itself with
kaldi-native-fbank too, so that step is the same library on both sides; the windowing options,
the LFR stacking and the CMVN are compared independently.
"""

import numpy as np
import pytest
import torch
from funasr.frontends.wav_frontend import WavFrontend
from funasr.models.sanm.encoder import SANMEncoder

from polyspeech.speechllm.folder import write_cmvn
from polyspeech.speechllm.frontend import Cmvn, ParaformerFrontend, read_cmvn, stack_low_frame_rate
from polyspeech.speechllm.sanm import SanmConfig, SanmEncoder
from polyspeech.weights import load_strict
from tests.conftest import sine


def reference_encoder(blocks=3, width=64, heads=4, units=96, kernel=11):
    torch.manual_seed(0)
    encoder = SANMEncoder(
        input_size=560,
        output_size=width,
        attention_heads=heads,
        linear_units=units,
        num_blocks=blocks,
        dropout_rate=0.0,
        positional_dropout_rate=0.0,
        attention_dropout_rate=0.0,
        input_layer="pe",
        kernel_size=kernel,
        sanm_shfit=0,
        selfattention_layer_type="sanm",
    ).eval()
    with torch.no_grad():  # layer norms start at 1 and 0: move them, so they are tested too
        for parameter in encoder.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return encoder


@pytest.mark.parametrize("heads", [4, 2])
def test_sanm_encoder_equals_funasr_with_the_same_weights(heads):
    reference = reference_encoder(heads=heads)
    ours = SanmEncoder(SanmConfig.from_state_dict(reference.state_dict(), attention_heads=heads))
    load_strict(ours, reference.state_dict(), "reference")
    ours.eval()
    torch.manual_seed(1)
    features = torch.randn(3, 41, 560)
    lengths = torch.tensor([41, 30, 7])
    with torch.no_grad():
        expected, expected_lengths, _ = reference(features, lengths)
        got, got_lengths = ours(features, lengths)
    assert got_lengths.tolist() == expected_lengths.tolist() == lengths.tolist()
    for row, length in enumerate(lengths.tolist()):
        difference = (got[row, :length] - expected[row, :length]).abs().max().item()
        assert difference < 1e-4, (row, difference)
    assert expected[0].abs().max() > 0.5  # not a comparison of zeros


def test_sizes_come_from_the_weights():
    reference = reference_encoder(blocks=4, width=48, units=80, kernel=5)
    config = SanmConfig.from_state_dict(reference.state_dict())
    assert (config.num_blocks, config.output_size, config.linear_units, config.kernel_size) == (
        4,
        48,
        80,
        5,
    )
    assert config.input_size == 560 and config.attention_heads == 4


def speech_like(seconds: float, rate: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(0)
    tones = sum(sine(f, seconds, rate, 0.1) for f in (220, 470, 1330, 3100))
    return (
        tones * (1 + np.sin(np.arange(len(tones)) / 900)) + 0.01 * rng.standard_normal(len(tones))
    ).astype(np.float32)


@pytest.mark.parametrize("seconds", [1.0, 1.337, 2.71])  # frame counts of every remainder by 6
def test_frontend_equals_funasr_wav_frontend(tmp_path, seconds):
    rng = np.random.default_rng(1)
    cmvn = Cmvn(
        rng.normal(-10, 2, 560).astype(np.float32), rng.uniform(0.1, 0.5, 560).astype(np.float32)
    )
    write_cmvn(cmvn, tmp_path / "am.mvn")
    reference = WavFrontend(
        cmvn_file=str(tmp_path / "am.mvn"),
        window="hamming",
        n_mels=80,
        lfr_m=7,
        lfr_n=6,
        dither=0.0,
    )
    samples = speech_like(seconds)
    expected, _ = reference(torch.from_numpy(samples)[None], torch.tensor([len(samples)]))
    got = ParaformerFrontend(read_cmvn(tmp_path / "am.mvn"))(samples)
    assert got.shape == tuple(expected.shape[1:])
    # funasr computes the filterbank with kaldi-native-fbank, ours with torch's FFT: float32
    # sums in another order (log energies within 1e-3, tests/audio/test_features.py; measured
    # here after CMVN: 1.2e-4)
    assert np.abs(got - expected[0].numpy()).max() < 5e-4


def test_low_frame_rate_stacking_pads_with_the_first_and_last_frames():
    frames = np.arange(8, dtype=np.float32)[:, None]  # 8 one-dimensional frames: 0..7
    stacked = stack_low_frame_rate(frames, m=7, n=6)
    assert stacked.tolist() == [[0, 0, 0, 0, 1, 2, 3], [3, 4, 5, 6, 7, 7, 7]]


def test_cmvn_file_round_trips_and_bad_files_are_named(tmp_path):
    cmvn = Cmvn(np.array([1.5, -2.25], np.float32), np.array([0.5, 3.0], np.float32))
    write_cmvn(cmvn, tmp_path / "am.mvn")
    back = read_cmvn(tmp_path / "am.mvn")
    assert back.shift.tolist() == [1.5, -2.25] and back.scale.tolist() == [0.5, 3.0]
    (tmp_path / "bad.mvn").write_text("<Nnet>\n</Nnet>\n")
    from polyspeech.errors import InputError

    with pytest.raises(InputError, match=r"bad\.mvn: not an am\.mvn file"):
        read_cmvn(tmp_path / "bad.mvn")
    with pytest.raises(InputError, match=r"missing\.mvn: cannot read"):
        read_cmvn(tmp_path / "missing.mvn")
