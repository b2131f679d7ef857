"""Reading model weights, in one place: a missing, truncated or corrupt weights file, or a model
folder a loader cannot read, is an :class:`InputError` naming the file; weights load into a module
strictly (every weight it has, nothing else, in its shape)."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from polyspeech.errors import InputError
from polyspeech.files import check_input_file

# What reading a damaged model raises: safetensors' own error, OSError (transformers wraps its
# failures in it too), a config.json that is not JSON or not text, and a pickle cut short.
_LOADING_ERRORS = (SafetensorError, OSError, json.JSONDecodeError, UnicodeDecodeError, EOFError)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 200 else text[:197] + "..."


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, on the CPU."""
    path = check_input_file(path, "weights file")
    try:
        return load_file(path)
    except _LOADING_ERRORS as error:
        raise InputError(
            f"{path}: damaged weights file ({_one_line(error)}); copy or download it again"
        ) from None


def read_torch_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a PyTorch ``.pt``/``.pth``/``.bin`` file, unpickled with
    ``weights_only=True`` (never arbitrary objects); a ``state_dict`` or ``model`` entry holding
    the tensors is unwrapped."""
    path = check_input_file(path, "weights file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (*_LOADING_ERRORS, pickle.UnpicklingError, RuntimeError, ValueError) as error:
        raise InputError(
            f"{path}: damaged weights file, or one torch cannot read safely ({_one_line(error)})"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(torch.is_tensor(v) for v in loaded.values()):
        raise InputError(f"{path}: not a state dict of tensors")
    return loaded


def check_model_folder(folder: str | os.PathLike) -> Path:
    """``folder`` as an existing folder; a file or nothing there is an error naming it."""
    folder = Path(folder)
    if folder.is_file():
        raise InputError(f"{folder}: is a file; a model is a folder (or a builtin name)")
    if not folder.is_dir():
        raise InputError(f"{folder}: model folder not found")
    return folder


@contextmanager
def loading_model(folder: str | os.PathLike) -> Iterator[None]:
    """Turn any failure to read the model folder ``folder`` (its config, its weights, through
    transformers or our own loaders) into one error naming the folder."""
    try:
        yield
    except _LOADING_ERRORS as error:
        raise InputError(
            f"{folder}: cannot load the model, damaged or incomplete ({_one_line(error)})"
        ) from None


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
