"""Our filterbank against kaldi-native-fbank's (the reference), same options."""

from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
import pytest

from polyspeech.audio import load_audio
from polyspeech.audio.features import fbank

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def reference(samples: np.ndarray, bins: int, window: str) -> np.ndarray:
    options = knf.FbankOptions()
    options.frame_opts.samp_freq = 16000
    options.frame_opts.dither = 0.0
    options.frame_opts.snip_edges = True
    options.frame_opts.window_type = window
    options.mel_opts.num_bins = bins
    computer = knf.OnlineFbank(options)
    computer.accept_waveform(16000, np.ascontiguousarray(samples * 32768.0, np.float32))
    computer.input_finished()
    frames = [computer.get_frame(i) for i in range(computer.num_frames_ready)]
    return np.array(frames, np.float32).reshape(-1, bins)


@pytest.mark.parametrize("window", ["povey", "hamming"])
@pytest.mark.parametrize("bins", [80, 40])
def test_fbank_equals_kaldi_native_fbank(window, bins):
    rng = np.random.default_rng(1)
    speech = load_audio(EXAMPLES / "cmn.flac")
    clips = [speech, 0.1 * rng.standard_normal(16000).astype(np.float32), speech[:399],
             speech[:400], speech[:561], np.zeros(4000, np.float32)]  # fmt: skip
    for clip in clips:
        ours, theirs = fbank(clip, bins, window=window), reference(clip, bins, window)
        assert ours.shape == theirs.shape and ours.dtype == np.float32
        # log energies of about -16 (silence) to 25: float32 sums in another order
        np.testing.assert_allclose(ours, theirs, atol=1e-3, rtol=0)
