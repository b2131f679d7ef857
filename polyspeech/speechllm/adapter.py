"""MooER's adapter: k encoder frames side by side, then Linear -> ReLU -> Linear to the LLM width.

With Paraformer's 60 ms frames, k = 2 gives one LLM embedding per 120 ms (MooER's choice); the
paper's ablation also tried 180 and 240 ms (k = 3, 4). Frames left over at the end (fewer than
k) are dropped, as MooER drops them. Parameter names are those of MooER's ``LinearAdapter``
(``linear1``, ``linear2``), under ``encoder_projector.`` in its ``adapter_project.pt``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from polyspeech.errors import InputError


@dataclass(frozen=True)
class AdapterConfig:
    encoder_size: int = 512
    llm_size: int = 3584
    stack: int = 2
    hidden_size: int = 2048

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, weights: dict[str, torch.Tensor], encoder_size: int):
        """Sizes from the weights' shapes; ``encoder_size`` tells the stacking factor apart."""
        try:
            hidden, stacked = weights["linear1.weight"].shape
            llm_size = weights["linear2.weight"].shape[0]
        except KeyError as missing:
            raise InputError(f"not a MooER adapter: no weight {missing.args[0]}") from None
        if stacked % encoder_size:
            raise InputError(
                f"adapter input width {stacked} is not a multiple of the encoder's {encoder_size}"
            )
        return cls(encoder_size, llm_size, stacked // encoder_size, hidden)


class FrameStackAdapter(nn.Module):
    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        self.linear1 = nn.Linear(config.encoder_size * config.stack, config.hidden_size)
        self.linear2 = nn.Linear(config.hidden_size, config.llm_size)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return lengths // self.config.stack

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(batch, frames, encoder_size) -> (batch, frames // stack, llm_size)."""
        batch, count, size = frames.shape
        kept = count - count % self.config.stack
        stacked = frames[:, :kept].reshape(
            batch, kept // self.config.stack, size * self.config.stack
        )
        return self.linear2(torch.relu(self.linear1(stacked)))
