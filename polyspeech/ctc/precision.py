"""The precision a model computes in: ``float32``, ``bfloat16`` or ``int8``, and the one ``auto``
picks on this machine (for recognisers, language ID and, through :func:`polyspeech.load`, speech
LLMs)."""

from __future__ import annotations

import torch

from polyspeech.devices import resolve_device
from polyspeech.errors import InputError

PRECISIONS = ("float32", "bfloat16", "int8")


def native_bf16() -> bool:
    """Whether this processor computes bf16 itself (AVX-512 bf16 or AMX) rather than emulating
    it in float32, which is slower than float32 itself (AVX2; docs/guide.md, "Measurements
    behind the code's choices")."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_precision(name: str, device: str, wav2vec2: bool = False) -> str:
    """``float32``, ``bfloat16``, ``int8`` or ``auto``; returns one of the first three.

    ``auto``: on a GPU, bf16 where it is supported, else float32. On a CPU, a ``wav2vec2``
    model (MMS's size, its time in big linear layers) takes int8 (see
    :mod:`polyspeech.ctc.quantize`): faster than float32 and bf16 there. Our small conformer
    takes bf16 where the processor has it natively (:func:`native_bf16`), else int8: with native
    bf16 the two are level, and bf16 keeps a model's own weights (figures: docs/guide.md, "Speed
    and memory" and "Serving and batch transcription").
    """
    # auto names this machine's device; another name is taken as given (checked where used)
    kind = resolve_device(device).type if device == "auto" else torch.device(device).type
    if name == "auto":
        if kind == "cuda":
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
        return "bfloat16" if native_bf16() and not wav2vec2 else "int8"
    if name not in PRECISIONS:
        raise InputError(f"dtype {name!r}: expected float32, bfloat16, int8 or auto")
    if name == "int8" and kind != "cpu":
        raise InputError(f"dtype int8 runs on the CPU only, not on {device}")
    return name
