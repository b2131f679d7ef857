"""Acoustic features: Kaldi-compatible log-mel filterbanks (kaldi-native-fbank)."""

from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np

from polyspeech.audio.io import SAMPLE_RATE

FRAME_SHIFT = 0.01  # seconds between fbank frames


def fbank(
    samples: np.ndarray,
    num_mel_bins: int = 80,
    sample_rate: int = SAMPLE_RATE,
    window: str = "povey",
) -> np.ndarray:
    """Log-mel filterbank energies (frames, num_mel_bins), float32; 25 ms windows every 10 ms.

    Matches Kaldi's ``compute-fbank-feats`` with dither 0 (deterministic, as at inference) and
    the given window (Kaldi's default ``povey``; Paraformer's front end uses ``hamming``).
    Samples are float32 in [-1, 1]; they are scaled to the 16-bit range Kaldi expects.
    """
    options = knf.FbankOptions()
    options.frame_opts.samp_freq = sample_rate
    options.frame_opts.dither = 0.0
    options.frame_opts.snip_edges = True
    options.frame_opts.window_type = window
    options.mel_opts.num_bins = num_mel_bins
    computer = knf.OnlineFbank(options)
    computer.accept_waveform(sample_rate, np.ascontiguousarray(samples * 32768.0, np.float32))
    computer.input_finished()
    frames = computer.num_frames_ready
    if frames == 0:
        return np.zeros((0, num_mel_bins), np.float32)
    return np.stack([computer.get_frame(i) for i in range(frames)]).astype(np.float32)
