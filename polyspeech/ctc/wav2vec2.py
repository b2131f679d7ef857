"""Hugging Face wav2vec2 CTC models (MMS) built in the working precision with low peak memory.

transformers reads ``model.safetensors`` through a memory map, and every page it reads counts
as resident: loading mms-1b-all's 3.9 GB of float32 into bf16 peaks near 6 GB. Here the model
is built without weights, in the working precision, and filled from the file one tensor at a
time with plain reads, so the peak is the model itself plus its largest tensor (and with int8,
the model in int8 plus one layer in bf16).
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Iterator
from pathlib import Path

import torch

from polyspeech.ctc.quantize import quantizable_linears, quantize_linear
from polyspeech.errors import InputError

_TYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
# never used at inference (the mask embedding of pre-training), absent from some checkpoints
_OPTIONAL = {"wav2vec2.masked_spec_embed"}


def read_safetensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors of a safetensors file, in file order, each read into memory of its own."""
    with open(path, "rb") as file:
        try:
            size = int.from_bytes(file.read(8), "little")
            header = json.loads(file.read(size))
        except (ValueError, UnicodeDecodeError, MemoryError, OverflowError):
            raise InputError(f"{path}: not a safetensors file") from None
        header.pop("__metadata__", None)
        for name, info in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
            begin, end = info["data_offsets"]
            data = bytearray(end - begin)
            file.seek(8 + size + begin)
            if file.readinto(data) != len(data):
                raise InputError(f"{path}: truncated (in {name})")
            if info["dtype"] not in _TYPES:
                raise InputError(f"{path}: {name} has an unsupported type {info['dtype']}")
            dtype = _TYPES[info["dtype"]]
            flat = torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)
            yield name, flat.reshape(info["shape"])


def return_freed_memory() -> None:
    """Hand memory freed inside the heap back to the system (glibc's ``malloc_trim``; nothing
    elsewhere). While loading, the float temporaries of each quantised layer would otherwise
    stay resident between the int8 layers and add up to more than the model; while
    transcribing, the activations of pieces of varying lengths leave the heap fragmented and
    growing (a 6-layer model of mms-1b-all's width on 60 s of speech, int8: peaks of 1.19 and
    1.30 GB without a trim after each piece, 0.85 and 0.88 GB with, 11% slower)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _current_name(name: str) -> str:
    """Checkpoints written before weight norm became a parametrisation name its two parts
    ``weight_g`` and ``weight_v``."""
    for old, new in (("weight_g", "original0"), ("weight_v", "original1")):
        if name.endswith(f".{old}"):
            return f"{name[: -len(old)]}parametrizations.weight.{new}"
    return name


def load_wav2vec2(
    folder: Path,
    dtype: torch.dtype,
    quantize: bool = False,
    architecture: str = "Wav2Vec2ForCTC",
) -> torch.nn.Module:
    """``architecture`` (``Wav2Vec2ForCTC``, or ``Wav2Vec2ForSequenceClassification`` for
    MMS-LID) from ``folder`` in ``dtype``, every weight from ``model.safetensors``
    (strict: a missing, unexpected or misshapen weight is an error naming it). With
    ``quantize``, each big linear layer gets int8 weights as soon as its weights are read
    (:mod:`polyspeech.ctc.quantize`), so the model is never whole in ``dtype``. A folder with
    other weight files (sharded, ``pytorch_model.bin``) is read by transformers instead."""
    import transformers
    from accelerate import init_empty_weights

    model_class = getattr(transformers, architecture)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        return model_class.from_pretrained(folder, dtype=dtype)
    with init_empty_weights():
        model = model_class(transformers.Wav2Vec2Config.from_pretrained(folder))
    model = model.to(dtype).to_empty(device="cpu")  # allocated, not yet touched
    targets = dict(model.named_parameters())
    names, filled = set(targets), set()
    pending = {  # per layer to quantise, the weights it still waits for
        layer: {f"{layer}.weight", f"{layer}.bias"} & names
        for layer in (quantizable_linears(model) if quantize else [])
    }
    layer_of = {name: layer for layer, needs in pending.items() for name in needs}
    with torch.no_grad():
        for stored, tensor in read_safetensors(weights):
            name = _current_name(stored)
            if name not in targets:
                raise InputError(f"{weights}: unexpected weight {stored}")
            if tensor.shape != targets[name].shape:
                raise InputError(
                    f"{weights}: {stored} has shape {tuple(tensor.shape)}, "
                    f"the model needs {tuple(targets[name].shape)}"
                )
            targets[name].copy_(tensor)
            filled.add(name)
            layer = layer_of.get(name)
            if layer is not None:
                pending[layer].discard(name)
                if not pending[layer]:
                    for done in (f"{layer}.weight", f"{layer}.bias"):
                        targets.pop(done, None)  # so the dtype copy is freed with the layer
                    quantize_linear(model, layer)
                    return_freed_memory()
    missing = sorted(names - filled - _OPTIONAL)
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise InputError(f"{weights}: missing weights {', '.join(missing[:3])}{more}")
    return model.eval()


def convolutions_in_bf16(network: torch.nn.Module) -> None:
    """Run an int8 wav2vec2's convolutions (the feature encoder and the positional convolution)
    in bf16, in place, their inputs cast in and outputs cast back to float32 around them; the
    linear layers stay int8 and attention float32. ``bench/int8_parts.py`` on an AMD EPYC with
    AVX-512 bf16, 60 s of speech on two threads: 13.4 s against 15.5 s."""
    model = network.wav2vec2
    for module in (model.feature_extractor, model.encoder.pos_conv_embed):
        module.to(torch.bfloat16)
        module.register_forward_pre_hook(_to_bf16)
        module.register_forward_hook(_to_float32)


def _to_bf16(_module: torch.nn.Module, inputs: tuple) -> tuple:
    return tuple(value.to(torch.bfloat16) for value in inputs)


def _to_float32(_module: torch.nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    return output.float()
