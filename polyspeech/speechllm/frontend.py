"""Paraformer's acoustic front end: Kaldi fbank, low frame rate stacking (LFR), CMVN from am.mvn.

80 log-mel energies every 10 ms (Hamming window, dither 0), then every ``lfr_n`` frames the
``lfr_m`` frames around them side by side (7 and 6: 560 numbers every 60 ms), then
``(x + shift) * scale`` with the shift and scale of FunASR's ``am.mvn`` file.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyspeech.audio.features import fbank
from polyspeech.errors import InputError


def stack_low_frame_rate(features: np.ndarray, m: int = 7, n: int = 6) -> np.ndarray:
    """(frames, dim) -> (ceil(frames / n), m * dim): row i holds the m frames from
    ``i * n - (m - 1) // 2`` on, side by side; before the start the first frame stands in, after
    the end the last."""
    frames, dim = features.shape
    if frames == 0:
        return np.zeros((0, m * dim), np.float32)
    rows = -(-frames // n)
    left = (m - 1) // 2
    starts = np.arange(rows) * n  # in the left-padded sequence
    index = np.clip(starts[:, None] + np.arange(m)[None, :] - left, 0, frames - 1)
    return features[index].reshape(rows, m * dim).astype(np.float32)


@dataclass(frozen=True)
class Cmvn:
    """``(x + shift) * scale``, per dimension."""

    shift: np.ndarray
    scale: np.ndarray

    def apply(self, features: np.ndarray) -> np.ndarray:
        return ((features + self.shift) * self.scale).astype(np.float32)


def read_cmvn(path: str | os.PathLike) -> Cmvn:
    """The ``<AddShift>`` and ``<Rescale>`` vectors of a Kaldi nnet1 text file (FunASR's am.mvn)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise InputError(f"{path}: cannot read the CMVN file ({error.strerror})") from None
    vectors: dict[str, np.ndarray] = {}
    for head, line in itertools.pairwise(lines):
        name = head.split()[0] if head.split() else ""
        fields = line.split()
        if name in ("<AddShift>", "<Rescale>") and fields[:1] == ["<LearnRateCoef>"]:
            try:  # <LearnRateCoef> c [ v1 v2 ... ]
                vectors[name] = np.array(fields[3:-1], np.float32)
            except ValueError:
                raise InputError(f"{path}: {name} holds a value that is not a number") from None
    if set(vectors) != {"<AddShift>", "<Rescale>"}:
        raise InputError(f"{path}: not an am.mvn file (needs <AddShift> and <Rescale> vectors)")
    if len(vectors["<AddShift>"]) != len(vectors["<Rescale>"]):
        raise InputError(f"{path}: <AddShift> and <Rescale> differ in length")
    return Cmvn(vectors["<AddShift>"], vectors["<Rescale>"])


@dataclass(frozen=True)
class ParaformerFrontend:
    """16 kHz samples -> (frames, num_mel_bins * lfr_m) encoder input, one frame per 60 ms."""

    cmvn: Cmvn | None
    num_mel_bins: int = 80
    lfr_m: int = 7
    lfr_n: int = 6

    @property
    def output_size(self) -> int:
        return self.num_mel_bins * self.lfr_m

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        features = fbank(samples, self.num_mel_bins, window="hamming")
        features = stack_low_frame_rate(features, self.lfr_m, self.lfr_n)
        if self.cmvn is not None:
            if len(self.cmvn.shift) != features.shape[1]:
                raise InputError(
                    f"CMVN of {len(self.cmvn.shift)} dimensions for {features.shape[1]}-dim "
                    "features"
                )
            features = self.cmvn.apply(features)
        return features
