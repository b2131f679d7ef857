"""Language identification: which languages are spoken, with probabilities, for a file or for
each of its VAD segments (code-switching shows as segments in different languages).

Two kinds of model folder:

- MMS-LID's, as Meta publishes it (``facebook/mms-lid-4017`` and smaller): a Hugging Face
  ``Wav2Vec2ForSequenceClassification`` (``config.json`` with ``id2label`` of ISO 639-3 codes,
  ``model.safetensors``, ``preprocessor_config.json``).
- Ours (``model_type`` ``polyspeech-conformer-lid``): the shared base of one of our CTC models
  (its ``model.safetensors`` as is) and, in ``head.safetensors``, a small head over its 40 ms
  states (one transformer layer, mean and standard deviation over time, a linear layer);
  ``polyspeech train lid`` trains the head on a frozen base. Where another folder holds the
  same base (``builtin:lid`` and ``builtin:speechllm``'s encoder), the config may name that
  file instead, ``"base_weights": {"path": RELATIVE PATH, "sha256": ITS HASH}``, so the
  weights are stored once; a file whose hash differs is an error, never other weights used.
  ``"temperature"`` divides its logits before the softmax (1 when absent): fitted on held-out
  clips by :func:`fit_temperature`, it keeps a wrong answer from coming out near certain.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from polyspeech.audio import SAMPLE_RATE, load_audio
from polyspeech.audio.vad import pieces
from polyspeech.ctc.conformer import ConformerConfig, ConformerCTC, input_features
from polyspeech.ctc.precision import native_bf16, resolve_precision
from polyspeech.devices import resolve_device
from polyspeech.errors import InputError
from polyspeech.files import file_sha256, named_weights
from polyspeech.hub import ModelSource, resolve_model
from polyspeech.text.languages import as_published
from polyspeech.weights import load_strict, loading_model, read_safetensors

LID_MODEL_TYPE = "polyspeech-conformer-lid"
PIECE = 30.0  # seconds: the longest piece one decision covers
SHORTEST = 0.25  # seconds: a shorter piece (a window's remainder) is too short to tell


@dataclass(frozen=True)
class LidHeadConfig:
    hidden_size: int = 192  # the base's width
    num_heads: int = 4
    feed_forward_size: int = 384
    dropout: float = 0.1


class LidHead(nn.Module):
    """(batch, frames, hidden) states and their lengths -> (batch, languages) logits."""

    def __init__(self, config: LidHeadConfig, labels: int) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(
            config.hidden_size,
            config.num_heads,
            config.feed_forward_size,
            config.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.output = nn.Linear(2 * config.hidden_size, labels)

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        frames = torch.arange(states.shape[1], device=states.device)
        padding = frames[None, :] >= lengths[:, None]
        x = self.layer(states, src_key_padding_mask=padding)
        keep = (~padding)[..., None].to(x.dtype)
        count = keep.sum(1).clamp(min=1)
        mean = (x * keep).sum(1) / count
        std = torch.sqrt(((x - mean[:, None]) ** 2 * keep).sum(1) / count + 1e-5)
        return self.output(torch.cat([mean, std], dim=-1))


class ConformerLid(nn.Module):
    """Features (batch, frames, mels [+ pitch]) -> logits: a CTC model's shared base, then the
    LID head."""

    def __init__(self, base: ConformerConfig, head: LidHeadConfig, labels: int) -> None:
        super().__init__()
        self.base = ConformerCTC(base)
        self.head = LidHead(head, labels)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        states, state_lengths = self.base.encode(features, lengths)
        return self.head(states, state_lengths)


def lid_config(base: ConformerConfig, head: LidHeadConfig, labels: list[str]) -> dict:
    return {
        "model_type": LID_MODEL_TYPE,
        "base": base.to_dict(),
        "head": asdict(head),
        "labels": labels,
    }


@dataclass
class LanguageProb:
    lang: str
    prob: float


@dataclass
class IdentifiedSegment:
    start: float
    end: float
    languages: list[LanguageProb]


@dataclass
class Identification:
    """The most probable languages of a file (its segments' probabilities weighted by their
    durations), most probable first, and those of each segment. No speech: no languages."""

    languages: list[LanguageProb]
    segments: list[IdentifiedSegment] = field(default_factory=list)
    duration: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class LidModel:
    """``identify(audio)``; ``probabilities(clips)`` for clips of up to 30 s."""

    family = "lid"

    def __init__(
        self, model: str | Path | ModelSource, device: str = "cpu", precision: str = "auto"
    ) -> None:
        """``model``: a folder, a builtin name, a Hub id (``facebook/mms-lid-126``) or a
        resolved :class:`ModelSource`."""
        self.source = model if isinstance(model, ModelSource) else resolve_model(model)
        self.folder = self.source.folder
        self.device = resolve_device(device)
        with loading_model(self.folder):
            config = json.loads(self.source.config_file().read_text())
            mms = "Wav2Vec2ForSequenceClassification" in config.get("architectures", [])
            self.precision = resolve_precision(precision, device, wav2vec2=mms)
            if config.get("model_type") == LID_MODEL_TYPE:
                self.labels = list(config["labels"])
                self._network: nn.Module = ConformerLid(
                    ConformerConfig.from_dict(config["base"]),
                    LidHeadConfig(**config["head"]),
                    len(self.labels),
                )
                for part, weights in (
                    (self._network.base, self._base_weights(config)),
                    (self._network.head, self.folder / "head.safetensors"),
                ):
                    if not weights.is_file():
                        raise InputError(f"{weights}: missing; our LID folder needs it")
                    load_strict(part, read_safetensors(weights), weights)
                self.temperature = float(config.get("temperature", 1.0))
                if not self.temperature > 0:
                    raise InputError(f"{self.folder / 'config.json'}: temperature must be > 0")
                self._network.float()
                self.precision = "float32"  # a small model: nothing to gain from int8 or bf16
            elif mms:
                self.temperature = 1.0
                self._network = self._load_mms_lid(config)
            else:
                raise InputError(
                    f"{self.folder / 'config.json'}: not a language-ID model (expected model_type "
                    f"{LID_MODEL_TYPE!r} or a Wav2Vec2ForSequenceClassification)"
                )
        self._network.to(self.device).eval()

    def _base_weights(self, config: dict) -> Path:
        """Our LID folder's base weights: its ``model.safetensors``, or the file of the same
        weights its config names (``base_weights``), checked against its hash."""
        path = named_weights(self.folder, config)
        if path is None:
            return self.folder / "model.safetensors"
        if not path.is_file():
            raise InputError(
                f"{path}: missing; {self.folder / 'config.json'} names it as its base weights "
                "(a copied folder needs the base's model.safetensors and no base_weights)"
            )
        if file_sha256(path) != config["base_weights"]["sha256"]:
            raise InputError(
                f"{path}: not the base weights {self.folder / 'config.json'} names (its sha256 "
                "differs); copy the base's model.safetensors into the LID folder"
            )
        return path

    def _load_mms_lid(self, config: dict) -> nn.Module:
        from polyspeech.ctc.quantize import quantize_linear_layers
        from polyspeech.ctc.wav2vec2 import convolutions_in_bf16, load_wav2vec2

        id2label = config.get("id2label") or {}
        if not id2label:
            raise InputError(f"{self.folder / 'config.json'}: no id2label (the languages)")
        # MMS's own codes as published (tgl, prs, ara: a recogniser's keys are the same), so
        # that no two become one (to_iso639_3 makes tgl and fil both fil)
        self.labels = [as_published(str(id2label[str(i)])) for i in range(len(id2label))]
        repeated = sorted(label for label, count in Counter(self.labels).items() if count > 1)
        if repeated:
            raise InputError(
                f"{self.folder / 'config.json'}: id2label names {', '.join(repeated)} twice"
            )
        dtype = torch.bfloat16 if self.precision == "bfloat16" else torch.float32
        quantize = self.precision == "int8"
        network = load_wav2vec2(self.folder, dtype, quantize, "Wav2Vec2ForSequenceClassification")
        if quantize:
            quantize_linear_layers(network)
            if native_bf16():
                convolutions_in_bf16(network)
        processor = self.folder / "preprocessor_config.json"
        self._normalize = (
            json.loads(processor.read_text()).get("do_normalize", True)
            if processor.is_file()
            else True
        )
        return network

    @property
    def languages(self) -> list[str]:
        return sorted(self.labels)

    @torch.inference_mode()
    def probabilities(self, clips: list[np.ndarray]) -> np.ndarray:
        """(clips, labels) probabilities, one clip (16 kHz, at most 30 s) at a time."""
        rows = []
        for clip in clips:
            if isinstance(self._network, ConformerLid):
                features = input_features(clip, self._network.base.config)
                features = torch.from_numpy(features)[None].to(self.device)
                lengths = torch.tensor([features.shape[1]], device=self.device)
                logits = self._network(features, lengths)
            else:
                audio = torch.from_numpy(clip)
                if self._normalize:
                    audio = (audio - audio.mean()) / torch.sqrt(audio.var() + 1e-7)
                weight = next(self._network.parameters())
                logits = self._network(audio[None].to(self.device, weight.dtype))
            rows.append(torch.softmax(logits.float() / self.temperature, dim=-1)[0].cpu().numpy())
        return np.stack(rows) if rows else np.zeros((0, len(self.labels)), np.float32)

    def ranked(self, probabilities: np.ndarray, top_k: int) -> list[LanguageProb]:
        order = np.argsort(-probabilities)[:top_k]
        return [LanguageProb(self.labels[i], round(float(probabilities[i]), 4)) for i in order]

    def identify(
        self,
        audio,
        top_k: int = 3,
        vad: bool = True,
        sample_rate: int = SAMPLE_RATE,
        vad_threshold: float = 0.5,
    ) -> Identification:
        """The ``top_k`` languages of ``audio`` (any length) and of each VAD piece of at most
        30 s (without VAD, of each 30 s window; a last one under 0.25 s is left out).
        ``vad_threshold``: silero's speech probability above which VAD hears speech."""
        if top_k < 1:
            raise InputError(f"--top-k must be at least 1, got {top_k}")
        rate = sample_rate if isinstance(audio, np.ndarray) else None
        samples = load_audio(audio, source_rate=rate)
        spans = pieces([samples], PIECE, vad, threshold=vad_threshold)[0]
        spans = [(s, e) for s, e in spans if e - s >= SHORTEST * SAMPLE_RATE]
        probabilities = self.probabilities([samples[s:e] for s, e in spans])
        duration = round(len(samples) / SAMPLE_RATE, 3)
        if not spans:
            return Identification([], [], duration)
        weights = np.array([e - s for s, e in spans], np.float64)
        overall = (probabilities * weights[:, None]).sum(0) / weights.sum()
        segments = [
            IdentifiedSegment(
                round(s / SAMPLE_RATE, 3), round(e / SAMPLE_RATE, 3), self.ranked(p, top_k)
            )
            for (s, e), p in zip(spans, probabilities, strict=True)
        ]
        return Identification(self.ranked(overall, top_k), segments, duration)


def fit_temperature(log_probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that gives ``labels`` (true label indices) the highest likelihood under
    ``softmax(log_probs / T)``; ``log_probs`` (clips, labels) are a model's log-probabilities at
    its present temperature (logits up to a constant per row). Searched over 0.5-50."""
    logits = torch.from_numpy(np.asarray(log_probs, np.float64))
    targets = torch.from_numpy(np.asarray(labels, np.int64))
    grid = np.exp(np.linspace(np.log(0.5), np.log(50.0), 400))
    losses = [float(nn.functional.cross_entropy(logits / float(t), targets)) for t in grid]
    return round(float(grid[int(np.argmin(losses))]), 3)
