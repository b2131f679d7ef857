"""Decisions the processes of one accelerate run must take together."""

from __future__ import annotations

import torch


def agree(accelerator, flag: bool) -> bool:
    """True in every process once one of them says so: each process has its own clock and its
    own losses, and one that stopped or switched alone would leave the others waiting."""
    if accelerator.num_processes == 1:
        return flag
    value = torch.tensor([float(flag)], device=accelerator.device)
    return bool(accelerator.reduce(value, reduction="sum").item() > 0)
