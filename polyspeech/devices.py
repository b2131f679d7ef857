"""What a device name means: ``auto`` (CUDA where this machine has it, else the CPU), ``cpu``,
``cuda`` or ``cuda:N``, checked against this machine so that a device it lacks is an error
naming it, not a failure deep in torch."""

from __future__ import annotations

import torch

from polyspeech.errors import InputError


def resolve_device(name: str | torch.device) -> torch.device:
    """The torch device ``name`` names, once it is known to be present here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"device {name!r}: unknown; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise InputError(f"device {name!r}: not supported; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise InputError(f"device {name!r}: no CUDA device on this machine; use cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(
            f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return device


def check_device(name: str) -> str:
    """The device ``name`` names, as a name (``auto`` made ``cuda`` or ``cpu``), once
    :func:`resolve_device` accepts it (for option parsing)."""
    return str(resolve_device(name))
