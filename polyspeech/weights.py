"""Loading weights into a module strictly: every weight it has, nothing else, in its shape."""

from __future__ import annotations

from pathlib import Path

import torch

from polyspeech.errors import InputError


def load_strict(module: torch.nn.Module, weights: dict[str, torch.Tensor], source: Path) -> None:
    """Load every weight of ``module`` from ``weights``; anything missing, left over or of
    another shape is an error naming the weights and ``source``."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} weight(s): {', '.join(missing[:5])}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} weight(s): {', '.join(unexpected[:5])}")
    for name in sorted(set(expected) & set(weights)):
        if expected[name].shape != weights[name].shape:
            problems.append(
                f"{name} has shape {tuple(weights[name].shape)}, the model needs "
                f"{tuple(expected[name].shape)}"
            )
            break
    if problems:
        raise InputError(f"{source}: {'; '.join(problems)}")
    module.load_state_dict(weights, strict=True)
