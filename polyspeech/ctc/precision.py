"""The precision a model computes in: ``float32``, ``bfloat16`` or ``int8``, and the one ``auto``
picks on this machine (for recognisers, language ID and, through :func:`polyspeech.load`, speech
LLMs)."""

from __future__ import annotations

import torch

from polyspeech.errors import InputError

PRECISIONS = ("float32", "bfloat16", "int8")


def native_bf16() -> bool:
    """Whether this processor computes bf16 itself (AVX-512 bf16 or AMX) rather than emulating
    it in float32 (AVX2, where bf16 took 2.7x longer than float32 on the 2026-12-01 model)."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_precision(name: str, device: str, wav2vec2: bool = False) -> str:
    """``float32``, ``bfloat16``, ``int8`` or ``auto``; returns one of the first three.

    ``auto``: on a GPU, bf16 where it is supported, else float32. On a CPU, a ``wav2vec2``
    model (MMS's size, its time in big linear layers) takes int8 (see
    :mod:`polyspeech.ctc.quantize`): on mms-1b-all's shape it beat float32 1.8x on an AVX2
    processor (``bench/ctc_speed.py``), and bf16 on an AVX-512-bf16 one (``bench/int8_parts.py``:
    13.4 s against 22.4 s for 60 s). Our small conformer takes bf16 where the processor has it
    natively (:func:`native_bf16`), else int8: on two threads of an AMD EPYC with AVX-512 bf16
    the two are level (``bench/batch_parts.py``, 8 files' forward pass together, two runs each:
    0.089 and 0.095 s in bf16, 0.111 and 0.087 s in int8), and bf16 keeps a model's own
    weights.
    """
    if name == "auto":
        if torch.device(device).type == "cuda":
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
        return "bfloat16" if native_bf16() and not wav2vec2 else "int8"
    if name not in PRECISIONS:
        raise InputError(f"dtype {name!r}: expected float32, bfloat16, int8 or auto")
    if name == "int8" and torch.device(device).type != "cpu":
        raise InputError(f"dtype int8 runs on the CPU only, not on {device}")
    return name
