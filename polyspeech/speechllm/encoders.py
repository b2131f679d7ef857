"""Speech encoders for the speech LLM: 16 kHz clips in, (batch, frames, width) states out.

- ``paraformer``: Paraformer's front end and our SAN-M encoder (MooER's choice, 60 ms frames).
- ``whisper``: a Hugging Face Whisper model's encoder (20 ms frames; clips padded to 30 s, as
  the encoder's positions require, and the states cut back to the clip).
- ``wav2vec2``: a Hugging Face wav2vec2 / MMS model's transformer states (20 ms frames).
- ``conformer``: the shared base of one of our CTC models (``builtin:ctc``'s folder: fbank,
  40 ms frames, no language adapter), the frozen encoder of the trained demo.

The paper compared such encoders; any of them can stand in for SAN-M by configuration. The
folder encoders take a folder, a builtin name or a hub id (``openai/whisper-small``,
``facebook/mms-300m``), resolved by :func:`polyspeech.hub.resolve_model`; one from a hub is
saved as its id and resolved commit, not copied.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from polyspeech.audio import SAMPLE_RATE
from polyspeech.audio.features import fbank
from polyspeech.errors import InputError
from polyspeech.hub import ModelSource, resolve_model
from polyspeech.speechllm.frontend import ParaformerFrontend
from polyspeech.speechllm.sanm import SanmEncoder

ENCODER_TYPES = ("paraformer", "whisper", "wav2vec2", "conformer")


class _FolderEncoder(nn.Module):
    """An encoder from a model folder; saving copies the folder it came from."""

    def __init__(self, source: ModelSource) -> None:
        super().__init__()
        self.source = source

    def save_pretrained(self, folder: Path) -> None:
        shutil.copytree(self.source.folder, folder, dirs_exist_ok=True)


def _pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(r) for r in rows])
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True), lengths


class ParaformerSpeechEncoder(nn.Module):
    kind = "paraformer"

    def __init__(self, frontend: ParaformerFrontend, sanm: SanmEncoder) -> None:
        super().__init__()
        self.frontend = frontend
        self.sanm = sanm
        self.output_size = sanm.config.output_size

    def forward(self, clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.sanm.after_norm.weight.device
        dtype = self.sanm.after_norm.weight.dtype
        features, lengths = _pad([torch.from_numpy(self.frontend(clip)) for clip in clips])
        return self.sanm(features.to(device, dtype), lengths.to(device))


class WhisperSpeechEncoder(_FolderEncoder):
    kind = "whisper"

    def __init__(self, source: ModelSource) -> None:
        super().__init__(source)
        from transformers import WhisperFeatureExtractor, WhisperModel

        self.extractor = WhisperFeatureExtractor.from_pretrained(source.folder)
        self.encoder = WhisperModel.from_pretrained(source.folder).get_encoder()
        self.output_size = self.encoder.config.d_model

    def forward(self, clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        weight = next(self.encoder.parameters())
        features = self.extractor(
            list(clips), sampling_rate=SAMPLE_RATE, return_tensors="pt"
        ).input_features  # padded to 30 s
        states = self.encoder(features.to(weight.device, weight.dtype)).last_hidden_state
        hop = self.extractor.hop_length
        lengths = torch.tensor([-(-len(c) // hop) for c in clips]).clamp(max=features.shape[-1])
        lengths = (lengths + 1) // 2  # the second convolution's stride
        return states[:, : int(lengths.max())], lengths.to(states.device)


class Wav2vec2SpeechEncoder(_FolderEncoder):
    kind = "wav2vec2"

    def __init__(self, source: ModelSource) -> None:
        super().__init__(source)
        from transformers import Wav2Vec2Model

        self.encoder = Wav2Vec2Model.from_pretrained(source.folder)
        self.output_size = self.encoder.config.hidden_size

    def forward(self, clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        weight = next(self.encoder.parameters())
        rows = [torch.from_numpy(c) for c in clips]
        rows = [(r - r.mean()) / torch.sqrt(r.var() + 1e-7) for r in rows]
        audio, lengths = _pad(rows)
        mask = torch.arange(audio.shape[1])[None, :] < lengths[:, None]
        states = self.encoder(
            audio.to(weight.device, weight.dtype), attention_mask=mask.to(weight.device)
        ).last_hidden_state
        out = self.encoder._get_feat_extract_output_lengths(lengths)
        return states, out.to(states.device)


class ConformerSpeechEncoder(_FolderEncoder):
    kind = "conformer"

    def __init__(self, source: ModelSource) -> None:
        super().__init__(source)
        from polyspeech.ctc.folder import load_conformer_base

        self.conformer, _ = load_conformer_base(source.folder)
        self.output_size = self.conformer.config.hidden_size

    def forward(self, clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        weight = self.conformer.feature_mean
        features, lengths = _pad([torch.from_numpy(fbank(clip)) for clip in clips])
        return self.conformer.encode(features.to(weight), lengths.to(weight.device))


def folder_encoder(kind: str, model: str | os.PathLike, revision: str | None = None) -> nn.Module:
    """A Whisper or wav2vec2 encoder from a Hugging Face folder or hub id, or a conformer from
    a CTC model folder of ours (or a builtin name); ``revision`` pins a hub id's."""
    if kind not in ENCODER_TYPES[1:]:
        raise InputError(f"encoder type {kind!r}: expected one of {', '.join(ENCODER_TYPES)}")
    source = resolve_model(model, revision)
    if not (source.folder / "config.json").is_file():
        raise InputError(f"{source.folder}: no config.json for the {kind} encoder")
    if kind == "conformer":
        return ConformerSpeechEncoder(source)
    if kind == "whisper":
        return WhisperSpeechEncoder(source)
    return Wav2vec2SpeechEncoder(source)


def hub_reference(source: ModelSource) -> dict:
    """How a speech-LLM config names an encoder from a hub: its id and resolved revision."""
    prefix = "modelscope:" if source.kind == "modelscope" else ""
    return {"model": f"{prefix}{source.repo_id}", "revision": source.revision}
