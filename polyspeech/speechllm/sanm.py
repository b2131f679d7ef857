"""The SAN-M encoder of Paraformer (Gao et al., 2020, arXiv:2006.01713), as MooER keeps it frozen.

Each block is pre-norm self-attention plus a memory block (a depthwise 1-D convolution over the
values, FSMN), then a ReLU feed-forward layer. The first block maps the input width (560: LFR
7x80 fbank) to the model width without a residual; the others keep it. Inputs are scaled by
sqrt(width) and given sinusoidal positions counted from 1.

Parameter names are FunASR's ``SANMEncoder``'s (``encoders0.0.self_attn.linear_q_k_v.weight``,
..., ``after_norm.bias``), so ``paraformer-encoder.pth`` and the encoder part of FunASR
Paraformer checkpoints load by name; tests/speechllm/test_sanm.py proves the outputs equal to
the ``funasr`` package's on the same weights.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from polyspeech.errors import InputError

LAYER_NORM_EPS = 1e-12  # FunASR's LayerNorm


@dataclass(frozen=True)
class SanmConfig:
    """Sizes of a SAN-M encoder; the defaults are MooER's (Paraformer-large's) encoder."""

    input_size: int = 560
    output_size: int = 512
    attention_heads: int = 4
    linear_units: int = 2048
    num_blocks: int = 50
    kernel_size: int = 11
    sanm_shift: int = 0  # the memory block looks this many more frames back than ahead
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, weights: dict[str, torch.Tensor], attention_heads: int = 4):
        """The sizes a state dict's shapes imply (heads are not in the weights: MooER has 4)."""
        try:
            blocks = {int(m.group(1)) for k in weights if (m := re.match(r"encoders\.(\d+)\.", k))}
            config = cls(
                input_size=weights["encoders0.0.norm1.weight"].shape[0],
                output_size=weights["after_norm.weight"].shape[0],
                attention_heads=attention_heads,
                linear_units=weights["encoders0.0.feed_forward.w_1.weight"].shape[0],
                num_blocks=1 + len(blocks),
                kernel_size=weights["encoders0.0.self_attn.fsmn_block.weight"].shape[-1],
            )
        except KeyError as missing:
            raise InputError(f"not a SAN-M encoder: no weight {missing.args[0]}") from None
        if config.output_size % attention_heads:
            raise InputError(
                f"SAN-M width {config.output_size} does not split into {attention_heads} heads"
            )
        return config


def sinusoidal_positions(frames: int, depth: int, dtype: torch.dtype, device) -> torch.Tensor:
    """(frames, depth): sines then cosines of positions 1..frames at ``depth / 2`` timescales
    from 1 to 1/10000 (FunASR's ``SinusoidalPositionEncoder``)."""
    increment = math.log(10000.0) / (depth / 2 - 1)
    timescales = torch.exp(
        torch.arange(depth // 2, device=device, dtype=torch.float32) * -increment
    )
    angles = torch.arange(1, frames + 1, device=device, dtype=torch.float32)[:, None] * timescales
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).to(dtype)


class SanmAttention(nn.Module):
    """Multi-head self-attention whose output adds the FSMN memory of the values."""

    def __init__(self, in_size: int, size: int, config: SanmConfig) -> None:
        super().__init__()
        self.heads = config.attention_heads
        self.linear_q_k_v = nn.Linear(in_size, 3 * size)
        self.linear_out = nn.Linear(size, size)
        self.fsmn_block = nn.Conv1d(
            size, size, config.kernel_size, groups=size, bias=False, padding=0
        )
        left = (config.kernel_size - 1) // 2 + config.sanm_shift
        self.padding = (left, config.kernel_size - 1 - left)
        self.dropout = config.attention_dropout_rate
        self.memory_dropout = nn.Dropout(config.attention_dropout_rate)

    def memory(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(batch, frames, size) values and (batch, frames) mask -> FSMN memory, 0 on padding."""
        values = values * mask[..., None]
        memory = self.fsmn_block(F.pad(values.transpose(1, 2), self.padding)).transpose(1, 2)
        return self.memory_dropout(memory + values) * mask[..., None]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, frames, _ = x.shape
        q, k, v = self.linear_q_k_v(x).chunk(3, dim=-1)
        memory = self.memory(v, mask)
        q, k, v = (t.reshape(batch, frames, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        attended = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
        )
        attended = attended.transpose(1, 2).reshape(batch, frames, -1)
        return self.linear_out(attended) + memory


class FeedForward(nn.Module):
    def __init__(self, size: int, units: int, dropout: float) -> None:
        super().__init__()
        self.w_1 = nn.Linear(size, units)
        self.w_2 = nn.Linear(units, size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.dropout(torch.relu(self.w_1(x))))


class SanmBlock(nn.Module):
    def __init__(self, in_size: int, size: int, config: SanmConfig) -> None:
        super().__init__()
        self.self_attn = SanmAttention(in_size, size, config)
        self.feed_forward = FeedForward(size, config.linear_units, config.dropout_rate)
        self.norm1 = nn.LayerNorm(in_size, eps=LAYER_NORM_EPS)
        self.norm2 = nn.LayerNorm(size, eps=LAYER_NORM_EPS)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.residual = in_size == size

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attended = self.dropout(self.self_attn(self.norm1(x), mask))
        x = x + attended if self.residual else attended
        return x + self.dropout(self.feed_forward(self.norm2(x)))


class SanmEncoder(nn.Module):
    """(batch, frames, input_size) features and their lengths -> (batch, frames, output_size)."""

    def __init__(self, config: SanmConfig) -> None:
        super().__init__()
        self.config = config
        self.encoders0 = nn.ModuleList([SanmBlock(config.input_size, config.output_size, config)])
        self.encoders = nn.ModuleList(
            SanmBlock(config.output_size, config.output_size, config)
            for _ in range(config.num_blocks - 1)
        )
        self.after_norm = nn.LayerNorm(config.output_size, eps=LAYER_NORM_EPS)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        frames = features.shape[1]
        mask = torch.arange(frames, device=features.device)[None, :] < lengths[:, None]
        x = features * math.sqrt(self.config.output_size)
        x = x + sinusoidal_positions(frames, x.shape[-1], x.dtype, x.device)
        for block in [*self.encoders0, *self.encoders]:
            x = block(x, mask)
        return self.after_norm(x), lengths
