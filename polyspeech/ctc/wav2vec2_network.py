"""The wav2vec2 network for inference, with the weight names of Hugging Face checkpoints: CTC
(``Wav2Vec2ForCTC``: MMS recognition, fine-tuned wav2vec2 models) and utterance classification
(``Wav2Vec2ForSequenceClassification``: MMS language ID).

It is here rather than taken from transformers because importing transformers' wav2vec2 costs a
command seconds before any weight is read, longer than loading mms-1b-all's shape in int8 from
the conversion cache takes (docs/guide.md, "Measurements behind the code's choices").
``tests/ctc/test_wav2vec2_network.py`` shows it computes what transformers' classes compute, on
each variant: the feature encoder normed per group (wav2vec2 base) or per layer (MMS), post- and
pre-norm ("stable") transformer layers, MMS's attention adapters, padded batches.

Inference only: no dropout, SpecAugment's mask embedding or pre-training heads; a config asking
for what this does not compute (transformers' ``add_adapter``, ``use_weighted_layer_sum``) is an
error naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

from polyspeech.errors import InputError

ACTIVATIONS = {
    "gelu": nn.GELU,
    "gelu_new": lambda: nn.GELU(approximate="tanh"),
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
}
ARCHITECTURES = ("Wav2Vec2ForCTC", "Wav2Vec2ForSequenceClassification")


@dataclass(frozen=True)
class Wav2Vec2Config:
    """What the network's shape depends on, with transformers' ``Wav2Vec2Config`` defaults."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5
    feat_extract_norm: str = "group"
    feat_extract_activation: str = "gelu"
    conv_dim: tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_bias: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False
    adapter_attn_dim: int | None = None
    vocab_size: int = 32
    classifier_proj_size: int = 256
    num_labels: int = 2

    @classmethod
    def from_file(cls, path: Path) -> Wav2Vec2Config:
        """The config of a ``config.json``; what this network cannot compute is an error."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise InputError(f"{path}: not a readable JSON config ({error})") from None
        for unsupported in ("add_adapter", "use_weighted_layer_sum"):
            if raw.get(unsupported):
                raise InputError(f"{path}: {unsupported} is not supported by polyspeech's wav2vec2")
        values = {field.name: raw[field.name] for field in fields(cls) if field.name in raw}
        if raw.get("id2label"):
            values["num_labels"] = len(raw["id2label"])
        for name in ("conv_dim", "conv_stride", "conv_kernel"):
            values[name] = tuple(values.get(name, getattr(cls, name)))
        config = cls(**values)
        if not len(config.conv_dim) == len(config.conv_stride) == len(config.conv_kernel):
            raise InputError(f"{path}: conv_dim, conv_stride and conv_kernel differ in length")
        if config.feat_extract_norm not in ("group", "layer"):
            raise InputError(
                f"{path}: feat_extract_norm {config.feat_extract_norm!r} is not 'group' or 'layer'"
            )
        for name in ("hidden_act", "feat_extract_activation"):
            if getattr(config, name) not in ACTIVATIONS:
                raise InputError(f"{path}: {name} {getattr(config, name)!r} is not supported")
        if config.hidden_size % config.num_attention_heads:
            raise InputError(f"{path}: hidden_size is not a multiple of num_attention_heads")
        return config


class ConvLayer(nn.Module):
    """One convolution of the feature encoder, normed over channels per frame (``layer``), per
    channel over time (``group``, wav2vec2 base's first layer) or not at all."""

    def __init__(self, config: Wav2Vec2Config, index: int, norm: str | None) -> None:
        super().__init__()
        channels = config.conv_dim[index]
        self.conv = nn.Conv1d(
            config.conv_dim[index - 1] if index else 1,
            channels,
            config.conv_kernel[index],
            config.conv_stride[index],
            bias=config.conv_bias,
        )
        self.norm = norm
        if norm == "layer":
            self.layer_norm = nn.LayerNorm(channels)
        elif norm == "group":
            self.layer_norm = nn.GroupNorm(channels, channels)
        self.activation = ACTIVATIONS[config.feat_extract_activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm == "layer":
            x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        elif self.norm == "group":
            x = self.layer_norm(x)
        return self.activation(x)


class FeatureEncoder(nn.Module):
    """Samples (batch, time) to frames (batch, channels, frames): a stack of strided
    convolutions, 20 ms a frame with wav2vec2's strides."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        if config.feat_extract_norm == "layer":
            norms = ["layer"] * len(config.conv_dim)
        else:
            norms = ["group"] + [None] * (len(config.conv_dim) - 1)
        self.conv_layers = nn.ModuleList(
            ConvLayer(config, index, norm) for index, norm in enumerate(norms)
        )

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        x = samples[:, None]
        for layer in self.conv_layers:
            x = layer(x)
        return x


class FeatureProjection(nn.Module):
    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.conv_dim[-1], eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.conv_dim[-1], config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.layer_norm(x))


class WeightNormConv(nn.Module):
    """A grouped convolution over time whose weight is a direction ``v`` scaled per kernel
    position by ``g`` (weight norm over dimension 2), under the names torch's weight-norm
    parametrisation gives them. Its own rather than that parametrisation, which computes a norm
    as the model is built, and built on the meta device that imports torch's compiler (4.5 s)."""

    def __init__(self, width: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.padding, self.groups = kernel // 2, groups
        norm = nn.ParameterDict(
            {
                "original0": nn.Parameter(torch.empty(1, 1, kernel)),
                "original1": nn.Parameter(torch.empty(width, width // groups, kernel)),
            }
        )
        self.parametrizations = nn.ModuleDict({"weight": norm})
        self.bias = nn.Parameter(torch.empty(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.parametrizations["weight"]
        direction, scale = norm["original1"], norm["original0"]
        weight = direction * (scale / torch.linalg.vector_norm(direction, dim=(0, 1), keepdim=True))
        return functional.conv1d(x, weight, self.bias, padding=self.padding, groups=self.groups)


class PositionalConvolution(nn.Module):
    """Relative positions as a grouped convolution over time (:class:`WeightNormConv`); an even
    kernel's extra output frame is dropped."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        kernel = config.num_conv_pos_embeddings
        self.conv = WeightNormConv(config.hidden_size, kernel, config.num_conv_pos_embedding_groups)
        self.drop = 1 - kernel % 2
        self.activation = ACTIVATIONS[config.feat_extract_activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2))
        if self.drop:
            y = y[:, :, : -self.drop]
        return self.activation(y).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        width = config.hidden_size
        self.heads = config.num_attention_heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``mask``: (batch, 1, 1, frames), True where a frame may be attended to."""
        batch, frames, width = x.shape

        def heads(projection: nn.Module) -> torch.Tensor:
            return projection(x).view(batch, frames, self.heads, -1).transpose(1, 2)

        out = functional.scaled_dot_product_attention(
            heads(self.q_proj), heads(self.k_proj), heads(self.v_proj), attn_mask=mask
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, frames, width))


class FeedForward(nn.Module):
    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACTIVATIONS[config.hidden_act]()
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_dense(self.activation(self.intermediate_dense(x)))


class AttnAdapter(nn.Module):
    """MMS's per-language adapter of a layer: norm, down to ``adapter_attn_dim``, ReLU, up."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.hidden_size)
        self.linear_1 = nn.Linear(config.hidden_size, config.adapter_attn_dim)
        self.linear_2 = nn.Linear(config.adapter_attn_dim, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(torch.relu(self.linear_1(self.norm(x))))


class EncoderLayer(nn.Module):
    """A transformer layer, norms after each residual sum, or (``stable``) before each block,
    where MMS adds its adapter after the feed-forward block."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.stable = config.do_stable_layer_norm
        self.attention = Attention(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.adapter_layer = (
            AttnAdapter(config) if self.stable and config.adapter_attn_dim is not None else None
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if not self.stable:
            x = self.layer_norm(x + self.attention(x, mask))
            return self.final_layer_norm(x + self.feed_forward(x))
        x = x + self.attention(self.layer_norm(x), mask)
        x = x + self.feed_forward(self.final_layer_norm(x))
        if self.adapter_layer is not None:
            x = x + self.adapter_layer(x)
        return x


class Encoder(nn.Module):
    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.stable = config.do_stable_layer_norm
        self.pos_conv_embed = PositionalConvolution(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: torch.Tensor, frames: torch.Tensor | None) -> torch.Tensor:
        """``frames``: (batch, frames), True on real frames; None where none is padding."""
        mask = None
        if frames is not None:
            x = x.masked_fill(~frames[:, :, None], 0.0)  # padding adds nothing to positions
            mask = frames[:, None, None, :]
        x = x + self.pos_conv_embed(x)
        if not self.stable:
            x = self.layer_norm(x)
        for layer in self.layers:
            x = layer(x, mask)
        return self.layer_norm(x) if self.stable else x


class Wav2Vec2(nn.Module):
    """Samples to the transformer's last hidden states (batch, frames, hidden)."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.config = config
        self.feature_extractor = FeatureEncoder(config)
        self.feature_projection = FeatureProjection(config)
        self.encoder = Encoder(config)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames out of clips of ``lengths`` samples."""
        for kernel, stride in zip(self.config.conv_kernel, self.config.conv_stride, strict=True):
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        return lengths

    def frame_mask(self, samples_mask: torch.Tensor, frames: int) -> torch.Tensor:
        """Real frames (batch, ``frames``) of a batch whose real samples are ``samples_mask``."""
        lengths = self.output_lengths(samples_mask.long().sum(-1))
        return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]

    def forward(
        self, samples: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Hidden states and the real frames' mask (None without ``attention_mask``, True on
        each real sample)."""
        features = self.feature_extractor(samples).transpose(1, 2)
        frames = None
        if attention_mask is not None:
            frames = self.frame_mask(attention_mask, features.shape[1])
        return self.encoder(self.feature_projection(features), frames), frames


class Wav2Vec2ForCTC(nn.Module):
    """Frame logits over a vocabulary (``lm_head``), the weights of ``Wav2Vec2ForCTC``."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.config = config
        self.wav2vec2 = Wav2Vec2(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(
        self, samples: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.lm_head(self.wav2vec2(samples, attention_mask)[0])

    def adapter_weights(self) -> dict[str, torch.Tensor]:
        """What a language's ``adapter.<lang>.safetensors`` replaces: every layer's adapter
        and the CTC head, by the names the file gives them."""
        weights = {
            name: param for name, param in self.named_parameters() if ".adapter_layer." in name
        }
        return weights | {f"lm_head.{name}": p for name, p in self.lm_head.named_parameters()}


class Wav2Vec2ForSequenceClassification(nn.Module):
    """Utterance logits: each frame projected (``projector``), the mean over real frames
    classified (``classifier``); the weights of ``Wav2Vec2ForSequenceClassification``."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.config = config
        self.wav2vec2 = Wav2Vec2(config)
        self.projector = nn.Linear(config.hidden_size, config.classifier_proj_size)
        self.classifier = nn.Linear(config.classifier_proj_size, config.num_labels)

    def forward(
        self, samples: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        hidden, frames = self.wav2vec2(samples, attention_mask)
        projected = self.projector(hidden)
        if frames is None:
            pooled = projected.mean(dim=1)
        else:
            real = frames[:, :, None].to(projected.dtype)
            pooled = (projected * real).sum(dim=1) / real.sum(dim=1)
        return self.classifier(pooled)


def build(architecture: str, config: Wav2Vec2Config) -> nn.Module:
    """``architecture`` (one of :data:`ARCHITECTURES`) of ``config``."""
    if architecture == "Wav2Vec2ForCTC":
        return Wav2Vec2ForCTC(config)
    return Wav2Vec2ForSequenceClassification(config)
