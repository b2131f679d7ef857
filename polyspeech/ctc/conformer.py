"""The CTC model we train from scratch on CPU: log-mel fbank -> conformer -> per-language CTC head.

With ``pitch``, three pitch features (:mod:`polyspeech.audio.pitch`) follow the mel bins: they
bypass the 2-D convolutions (which assume a frequency axis) and join their output through a 1-D
convolution over the same frames, added before the first block.

It keeps MMS's multilingual scheme: a shared base, and per language a small bottleneck adapter
after every block plus its own output layer over its own characters. Raw-waveform wav2vec2 does not
learn within CPU budgets (shared/notes/ctc-from-scratch-on-cpu.md); an fbank front end does.

Trained from scratch, twelve separate output layers each see a twelfth of the updates and stay
stuck at the all-blank output (docs/guide.md, "Measurements behind the code's choices"). So
training ties them
(:meth:`ConformerCTC.tie_heads`): every language's output layer is its rows of one layer over all
characters (a character that several languages share is one row), scored with a softmax over its
own characters only, and a batch may mix languages (one per row); the saved model has the usual
separate layers (:meth:`ConformerCTC.untie_heads`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from polyspeech.audio.features import fbank
from polyspeech.audio.pitch import PITCH_FEATURES, pitch

MODEL_TYPE = "polyspeech-conformer-ctc"


@dataclass(frozen=True)
class ConformerConfig:
    """Every dimension of the model; a tiny config gives a tiny model on the same code path."""

    num_mel_bins: int = 80
    conv_channels: int = 64
    hidden_size: int = 192
    num_heads: int = 4
    feed_forward_size: int = 768
    num_layers: int = 6
    kernel_size: int = 15
    dropout: float = 0.1
    adapter_size: int = 16
    # CTC frames per encoder frame: 2 reads two outputs from every 40 ms frame (20 ms, as MMS).
    upsampling: int = 1
    pitch: bool = False  # pitch features after the mel bins (for tonal languages)
    # Each utterance's own mean fbank in place of the global mean (cepstral mean normalisation:
    # a microphone's or room's fixed colouring is taken out); pitch features keep the global one.
    utterance_mean: bool = False

    @property
    def num_features(self) -> int:
        return self.num_mel_bins + (PITCH_FEATURES if self.pitch else 0)

    @property
    def frame_shift(self) -> float:
        return 0.04 / self.upsampling  # two stride-2 convolutions over 10 ms fbank frames

    def to_dict(self) -> dict:
        return {"model_type": MODEL_TYPE, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> ConformerConfig:
        return cls(**{key: value for key, value in data.items() if key != "model_type"})


def input_features(samples: np.ndarray, config: ConformerConfig) -> np.ndarray:
    """What a model of ``config`` reads from 16 kHz samples: (frames, ``config.num_features``)."""
    mels = fbank(samples, config.num_mel_bins)
    return np.concatenate([mels, pitch(samples)], axis=1) if config.pitch else mels


class LanguageAdapter(nn.Module):
    """One language's weights: a bottleneck adapter per block and the output layer."""

    def __init__(self, config: ConformerConfig, vocab_size: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(config.hidden_size),
                nn.Linear(config.hidden_size, config.adapter_size),
                nn.ReLU(),
                nn.Linear(config.adapter_size, config.hidden_size),
            )
            for _ in range(config.num_layers)
        )
        for layer in self.layers:
            nn.init.zeros_(layer[3].weight)  # a new adapter starts as the identity
            nn.init.zeros_(layer[3].bias)
        self.head = nn.Linear(config.hidden_size, vocab_size)


class _FeedForward(nn.Sequential):
    def __init__(self, config: ConformerConfig) -> None:
        super().__init__(
            nn.LayerNorm(config.hidden_size),
            nn.Linear(config.hidden_size, config.feed_forward_size),
            nn.SiLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.feed_forward_size, config.hidden_size),
            nn.Dropout(config.dropout),
        )


class _Convolution(nn.Module):
    def __init__(self, config: ConformerConfig) -> None:
        super().__init__()
        size = config.hidden_size
        self.norm = nn.LayerNorm(size)
        self.pointwise_in = nn.Conv1d(size, 2 * size, 1)
        self.depthwise = nn.Conv1d(
            size, size, config.kernel_size, padding=config.kernel_size // 2, groups=size
        )
        self.depthwise_norm = nn.LayerNorm(size)
        self.pointwise_out = nn.Conv1d(size, size, 1)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        x = nn.functional.glu(self.pointwise_in(self.norm(x).transpose(1, 2)), dim=1)
        x = self.depthwise(x.masked_fill(padding[:, None, :], 0.0)).transpose(1, 2)
        x = nn.functional.silu(self.depthwise_norm(x)).transpose(1, 2)
        return self.dropout(self.pointwise_out(x).transpose(1, 2))


class _Block(nn.Module):
    def __init__(self, config: ConformerConfig) -> None:
        super().__init__()
        self.feed_forward_1 = _FeedForward(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size)
        self.attention = nn.MultiheadAttention(
            config.hidden_size, config.num_heads, dropout=config.dropout, batch_first=True
        )
        self.attention_dropout = nn.Dropout(config.dropout)
        self.convolution = _Convolution(config)
        self.feed_forward_2 = _FeedForward(config)
        self.final_norm = nn.LayerNorm(config.hidden_size)

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.feed_forward_1(x)
        query = self.attention_norm(x)
        attended, _ = self.attention(
            query, query, query, key_padding_mask=padding, need_weights=False
        )
        x = x + self.attention_dropout(attended)
        x = x + self.convolution(x, padding)
        x = x + 0.5 * self.feed_forward_2(x)
        return self.final_norm(x)


def _sinusoids(length: int, size: int, device: torch.device) -> torch.Tensor:
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    rates = torch.exp(
        torch.arange(0, size, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / size)
    )
    table = torch.zeros(length, size, device=device)
    table[:, 0::2] = torch.sin(position * rates)
    table[:, 1::2] = torch.cos(position * rates)
    return table


class ConformerCTC(nn.Module):
    """Features (batch, frames, mels [+ pitch]) -> log-probabilities (batch, CTC frames, vocab
    of ``lang``)."""

    def __init__(self, config: ConformerConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.conv_channels
        self.register_buffer("feature_mean", torch.zeros(config.num_features))
        self.register_buffer("feature_std", torch.ones(config.num_features))
        self.subsampling = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2),
            nn.ReLU(),
        )
        reduced_mels = ((config.num_mel_bins - 1) // 2 - 1) // 2
        self.input_projection = nn.Linear(channels * reduced_mels, config.hidden_size)
        self.input_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.num_layers))
        self.upsample: nn.Linear | None = None
        if config.upsampling > 1:
            # starts as a copy of the frame into each of its CTC frames (see ``forward``), and
            # draws no random numbers: the other layers start as they would without it
            size = config.hidden_size
            self.upsample = nn.utils.skip_init(nn.Linear, size, config.upsampling * size)
            with torch.no_grad():
                self.upsample.weight.copy_(
                    torch.eye(config.hidden_size).repeat(config.upsampling, 1)
                )
                self.upsample.bias.zero_()
        self.adapters = nn.ModuleDict()
        self.shared_head: nn.Linear | None = None
        self._head_rows: dict[str, torch.Tensor] = {}
        self.sound_head: nn.Linear | None = None
        self._sound_rows: dict[str, torch.Tensor] = {}
        self.pitch_projection: nn.Conv1d | None = None
        if config.pitch:  # last, so that the other layers start as they would without it
            # a 7-frame kernel every 4 frames: the output frames of the two 2-D convolutions
            self.pitch_projection = nn.Conv1d(PITCH_FEATURES, config.hidden_size, 7, stride=4)

    def tie_heads(
        self, rows: dict[str, list[int]], size: int, sounds: dict[str, list[int]] | None = None
    ) -> None:
        """Train each language's output layer as rows ``rows[lang]`` of one shared layer.

        With ``sounds``, a language's row ``i`` also adds row ``sounds[lang][i]`` of a second
        shared layer of sounds, zero at the start (-1: none), so that characters read alike
        (Chinese homophones) share what they sound like and differ only by their own rows.
        """
        self.shared_head = nn.Linear(self.config.hidden_size, size).to(self.feature_mean.device)
        self._head_rows = {lang: torch.tensor(ids) for lang, ids in rows.items()}
        self.sound_head, self._sound_rows = None, {}
        if sounds:
            count = 1 + max(max(ids) for ids in sounds.values())
            # the last row is "none"; no random numbers drawn (dropout's stay as they were)
            self.sound_head = nn.utils.skip_init(nn.Linear, self.config.hidden_size, count + 1)
            nn.init.zeros_(self.sound_head.weight)
            nn.init.zeros_(self.sound_head.bias)
            self.sound_head.to(self.feature_mean.device)
            self._sound_rows = {
                lang: torch.tensor([count if i < 0 else i for i in ids])
                for lang, ids in sounds.items()
            }

    def _tied_layer(self, lang: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``lang``'s output weight and bias from the shared layers (see :meth:`tie_heads`)."""
        assert self.shared_head is not None
        rows = self._head_rows[lang].to(self.feature_mean.device)
        weight, bias = self.shared_head.weight[rows], self.shared_head.bias[rows]
        if lang in self._sound_rows:
            sounds = self._sound_rows[lang].to(rows.device)
            none = len(self.sound_head.bias) - 1
            keep = (sounds != none).to(weight.dtype)[:, None]  # the "none" row stays zero
            weight = weight + keep * self.sound_head.weight[sounds]
            bias = bias + keep[:, 0] * self.sound_head.bias[sounds]
        return weight, bias

    def untie_heads(self) -> None:
        """Copy each language's rows of the shared layers into its own output layer."""
        with torch.no_grad():
            for lang in self._head_rows:
                weight, bias = self._tied_layer(lang)
                self.adapters[lang].head.weight.copy_(weight)
                self.adapters[lang].head.bias.copy_(bias)
        self.shared_head, self._head_rows = None, {}
        self.sound_head, self._sound_rows = None, {}

    def add_language(self, lang: str, vocab_size: int) -> LanguageAdapter:
        """A new, untrained adapter and output layer for ``lang``."""
        adapter = LanguageAdapter(self.config, vocab_size)
        self.adapters[lang] = adapter.to(self.feature_mean.device)
        return adapter

    def output_lengths(self, lengths: torch.Tensor, upsample: bool = True) -> torch.Tensor:
        for _ in range(2):
            lengths = (lengths - 3) // 2 + 1
        return lengths * self.config.upsampling if upsample else lengths

    def encode(
        self, features: torch.Tensor, lengths: torch.Tensor, lang: str | list[str] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The last block's states (batch, frames, hidden) every 40 ms and their lengths, through
        ``lang``'s adapter (see :meth:`forward`), or the shared base alone when ``lang`` is None."""
        mean = self._mean(features, lengths) if self.config.utterance_mean else self.feature_mean
        normalised = (features - mean) / self.feature_std
        mels = normalised[..., : self.config.num_mel_bins]
        x = self.subsampling(mels[:, None])  # (batch, channels, frames', mels')
        x = self.input_projection(x.permute(0, 2, 1, 3).flatten(2))
        if self.pitch_projection is not None:
            pitch_part = normalised[..., self.config.num_mel_bins :].transpose(1, 2)
            x = x + self.pitch_projection(pitch_part).transpose(1, 2)
        encoder_lengths = self.output_lengths(lengths, upsample=False)
        frames = x.shape[1]
        padding = torch.arange(frames, device=x.device)[None, :] >= encoder_lengths[:, None]
        x = self.input_dropout(x + _sinusoids(frames, x.shape[2], x.device).to(x.dtype))
        groups: dict[str, torch.Tensor | None] = {}
        if isinstance(lang, str):
            groups[lang] = None
        elif lang is not None:
            for code in dict.fromkeys(lang):
                rows = [row for row, other in enumerate(lang) if other == code]
                groups[code] = torch.tensor(rows, device=x.device)
        for index, block in enumerate(self.blocks):
            x = block(x, padding)
            for code, rows in groups.items():
                layer = self.adapters[code].layers[index]
                x = x + layer(x) if rows is None else x.index_add(0, rows, layer(x[rows]))
        return x, encoder_lengths

    def _mean(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Each utterance's mean mel frame over its own frames (batch, 1, features), the
        global mean for the pitch features."""
        frames = torch.arange(features.shape[1], device=features.device)
        valid = (frames[None, :] < lengths[:, None]).unsqueeze(-1).to(features.dtype)
        mels = self.config.num_mel_bins
        sums = (features[..., :mels] * valid).sum(dim=1, keepdim=True)
        own = sums / lengths.clamp(min=1)[:, None, None].to(features.dtype)
        rest = self.feature_mean[mels:].expand(features.shape[0], 1, -1).to(features.dtype)
        return torch.cat([own, rest], dim=-1)

    def states(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        lang: str | list[str],
        upsample: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The states the output layers read (batch, CTC frames, hidden) and their lengths:
        :meth:`encode`, then the upsampling layer if the model has one.

        ``upsample=False`` skips that layer: one CTC frame per 40 ms encoder frame. Training
        starts so (at 20 ms, the all-blank stage did not end in 500 steps), and then the layer,
        still a copy of each frame into two, turns the 40 ms model into an equal 20 ms one.
        """
        x, out_lengths = self.encode(features, lengths, lang)
        if self.upsample is not None and upsample:
            frames = x.shape[1]
            x = self.upsample(x).reshape(x.shape[0], frames * self.config.upsampling, -1)
            out_lengths = self.output_lengths(lengths)
        return x, out_lengths

    def head_logits(self, x: torch.Tensor, lang: str) -> torch.Tensor:
        """``lang``'s output layer over states ``x``: its own layer, or its rows of the tied one."""
        if self.shared_head is None:
            return self.adapters[lang].head(x)
        return nn.functional.linear(x, *self._tied_layer(lang))

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        lang: str | list[str],
        upsample: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return log-probabilities and their lengths (frames of ``config.frame_shift``;
        ``upsample`` as in :meth:`states`).

        ``lang`` is one language for the whole batch, scored over its own characters; or one
        language per row: then every row goes through its own adapter and output layer, and
        the columns past its vocabulary are padding (-1e4 before the softmax).
        """
        x, out_lengths = self.states(features, lengths, lang, upsample)
        if isinstance(lang, str):
            return self.head_logits(x, lang).log_softmax(dim=-1), out_lengths
        widths = {
            code: len(self._head_rows[code])
            if self.shared_head is not None
            else self.adapters[code].head.out_features
            for code in lang
        }
        logits = x.new_full((*x.shape[:2], max(widths.values())), -1e4)
        for code in widths:
            rows = torch.tensor([r for r, c in enumerate(lang) if c == code], device=x.device)
            logits[rows, :, : widths[code]] = self.head_logits(x[rows], code)
        return logits.log_softmax(dim=-1), out_lengths
