"""Hugging Face wav2vec2 CTC models (MMS) built in the working precision with low peak memory.

transformers reads ``model.safetensors`` through a memory map, and every page it reads counts
as resident: loading mms-1b-all's 3.9 GB of float32 into bf16 peaks near 6 GB. Here the model
(:mod:`polyspeech.ctc.wav2vec2_network`) is built without weights, in the working precision, and
filled from the file one tensor at a time with plain reads (straight into the weight where the
file holds the working type), so the peak is the model itself plus its largest tensor; with
int8, each big linear layer is quantised from the file's float32 as soon as its weights are
read, so the model is never whole in float.

An int8 model's converted weights are cached (:mod:`polyspeech.ctc.converted`): a later load
reads them and only packs each layer for the int8 kernels again, on threads of their own, while
the model is built and its other weights read.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from polyspeech.ctc import converted
from polyspeech.ctc.quantize import (
    int8_linear,
    int8_weight,
    quantizable_linears,
    quiet_deprecation,
)
from polyspeech.ctc.wav2vec2_network import Wav2Vec2Config, build
from polyspeech.errors import InputError

log = logging.getLogger(__name__)

_TYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_CODES = {dtype: code for code, dtype in _TYPES.items()}
# in some checkpoints, never used at inference (SpecAugment's mask embedding): not read
_UNUSED = {"wav2vec2.masked_spec_embed"}
# beyond this, packing is a small part of a load and the weights waiting for it add up
PACKING_THREADS = 8


@dataclass(frozen=True)
class StoredTensor:
    """One tensor of a safetensors file: its name, type, shape and bytes in the file."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int  # offsets from the start of the file
    end: int


def read_header(path: Path) -> tuple[list[StoredTensor], dict[str, str]]:
    """The tensors a safetensors file holds, in file order, and its metadata."""
    with open(path, "rb") as file:
        try:
            size = int.from_bytes(file.read(8), "little")
            header = json.loads(file.read(size))
            metadata = header.pop("__metadata__", None) or {}
            items = []
            for name, info in header.items():
                begin, end = (int(offset) for offset in info["data_offsets"])
                items.append((name, info["dtype"], tuple(map(int, info["shape"])), begin, end))
        except (ValueError, TypeError, KeyError, AttributeError, MemoryError, OverflowError):
            raise InputError(f"{path}: not a safetensors file") from None
    tensors = []
    for name, code, shape, begin, end in items:
        if code not in _TYPES:
            raise InputError(f"{path}: {name} has an unsupported type {code}")
        if begin < 0 or end - begin != math.prod(shape) * _TYPES[code].itemsize:
            raise InputError(f"{path}: {name} holds {end - begin} bytes, not its shape's")
        tensors.append(StoredTensor(name, _TYPES[code], shape, 8 + size + begin, 8 + size + end))
    return sorted(tensors, key=lambda stored: stored.begin), metadata


def _bytes_of(tensor: torch.Tensor) -> np.ndarray:
    """The memory of a contiguous tensor (an int8 quantised one's too) as bytes, shared."""
    if tensor.is_quantized:
        tensor = torch.empty(0, dtype=torch.int8).set_(
            tensor.untyped_storage(), tensor.storage_offset(), tensor.shape, tensor.stride()
        )
    return tensor.detach().reshape(-1).view(torch.uint8).numpy()


def _read_into(file, stored: StoredTensor, target: torch.Tensor) -> torch.Tensor:
    """``stored``'s bytes read into ``target`` (contiguous, of its size), which is returned."""
    view = memoryview(_bytes_of(target))
    file.seek(stored.begin)
    done = 0
    while done < len(view):
        count = file.readinto(view[done:])
        if not count:
            raise InputError(f"{file.name}: truncated (in {stored.name})")
        done += count
    return target


def read_safetensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors of a safetensors file, in file order, each read into memory of its own."""
    tensors, _ = read_header(path)
    with open(path, "rb") as file:
        for stored in tensors:
            yield (
                stored.name,
                _read_into(file, stored, torch.empty(stored.shape, dtype=stored.dtype)),
            )


def return_freed_memory() -> None:
    """Hand memory freed inside the heap back to the system (glibc's ``malloc_trim``; nothing
    elsewhere). While loading, the int8 weights freed once packed would otherwise stay
    resident; while transcribing, the activations of pieces of varying lengths would leave the
    heap fragmented and growing (peaks with and without: docs/guide.md, "Measurements behind
    the code's choices")."""
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


@dataclass(frozen=True)
class _Item:
    """A tensor of the checkpoint and what becomes of it: a weight of the model (``param``), or
    the ``weight`` or ``bias`` of the int8 linear layer ``layer``."""

    stored: StoredTensor
    name: str
    role: str
    layer: str | None


def _matched(
    source: Path, stored: list[tuple[str, tuple[int, ...]]], model: torch.nn.Module
) -> list[str | None]:
    """The model's name for each stored (name, shape), None for one never used at inference;
    strict: a missing, unexpected or misshapen weight is an error naming it and ``source``."""
    targets = {name: tuple(param.shape) for name, param in model.named_parameters()}
    names: list[str | None] = []
    for stored_name, shape in stored:
        name = None if stored_name in _UNUSED else _current_name(stored_name)
        if name is not None and name not in targets:
            raise InputError(f"{source}: unexpected weight {stored_name}")
        if name is not None and shape != targets[name]:
            raise InputError(
                f"{source}: {stored_name} has shape {shape}, the model needs {targets[name]}"
            )
        names.append(name)
    missing = sorted(set(targets) - set(names))
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise InputError(f"{source}: missing weights {', '.join(missing[:3])}{more}")
    return names


def _plan(weights: Path, model: torch.nn.Module, quantize: bool) -> list[_Item]:
    """What each tensor of ``weights`` becomes in ``model``, checked before anything is read
    (:func:`_matched`)."""
    layers = set(quantizable_linears(model)) if quantize else set()
    tensors = read_header(weights)[0]
    plan = []
    for stored, name in zip(
        tensors, _matched(weights, [(t.name, t.shape) for t in tensors], model), strict=True
    ):
        if name is None:
            continue
        layer, _, part = name.rpartition(".")
        if layer in layers:
            plan.append(_Item(stored, name, part, layer))
        else:
            plan.append(_Item(stored, name, "param", None))
    return plan


def _layout(plan: list[_Item], model: torch.nn.Module) -> list[tuple[str, str, tuple, int]]:
    """The tensors of a conversion cache entry, in order: (name, type, shape, bytes). An int8
    weight ``L.weight`` comes with ``L.weight.scale`` and ``L.weight.zero_point`` before it."""
    targets = dict(model.named_parameters())
    layout = []
    for item in plan:
        shape, count = item.stored.shape, math.prod(item.stored.shape)
        if item.role == "weight":
            layout += [
                (f"{item.name}.scale", "F64", (), 8),
                (f"{item.name}.zero_point", "I64", (), 8),
            ]
            layout.append((item.name, "I8", shape, count))
        elif item.role == "bias":
            layout.append((item.name, "F32", shape, 4 * count))
        else:
            dtype = targets[item.name].dtype
            layout.append((item.name, _CODES[dtype], shape, count * dtype.itemsize))
    return layout


class _Packer:
    """Packs int8 layers for the CPU's int8 kernels as their weights arrive, on
    ``torch.get_num_threads()`` threads (at most :data:`PACKING_THREADS`; fbgemm packs a layer
    on one thread, without Python's lock), with at most two a thread waiting so that unpacked
    weights do not pile up; ``parts``: how many tensors (weight, bias) each layer waits for.
    :meth:`install` puts them in a model."""

    def __init__(self, parts: dict[str, int]) -> None:
        self._parts = parts
        self._waiting: dict[str, dict[str, torch.Tensor]] = {layer: {} for layer in parts}
        self._packed: list[tuple[str, Future]] = []
        quiet_deprecation()  # here, before the threads
        threads = min(torch.get_num_threads(), PACKING_THREADS)
        self._slots = threading.BoundedSemaphore(2 * threads)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="int8-pack")

    def add(self, layer: str, part: str, tensor: torch.Tensor) -> None:
        parts = self._waiting[layer]
        parts[part] = tensor
        if len(parts) == self._parts[layer]:
            del self._waiting[layer]
            self._slots.acquire()
            future = self._pool.submit(int8_linear, parts["weight"], parts.get("bias"))
            future.add_done_callback(lambda _: self._slots.release())
            self._packed.append((layer, future))
            if len(self._packed) % 8 == 0:  # the freed int8 weights, else 0.6 GB over the model
                return_freed_memory()

    def install(self, model: torch.nn.Module) -> None:
        """Every layer packed (all of them: an error leaves the model as it was) into ``model``."""
        if self._waiting:
            raise InputError(f"int8 layers without their weights: {', '.join(self._waiting)}")
        packed = [(layer, future.result()) for layer, future in self._packed]
        for layer, module in packed:
            parent, _, attribute = layer.rpartition(".")
            setattr(model.get_submodule(parent), attribute, module)

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)
        self._packed.clear()  # layers of an entry found damaged: not kept through a conversion


def _convert(
    model: torch.nn.Module, weights: Path, plan: list[_Item], writer: converted.EntryWriter | None
) -> None:
    """Fill ``model`` from ``weights``, quantising as planned; ``writer`` gets the results."""
    targets = dict(model.named_parameters())
    staged = [
        item.stored
        for item in plan
        if item.role == "weight"
        or (item.role == "param" and item.stored.dtype != targets[item.name].dtype)
    ]
    staging = torch.empty(max((s.end - s.begin for s in staged), default=0), dtype=torch.uint8)

    def stage(stored: StoredTensor) -> torch.Tensor:  # one buffer, reused tensor after tensor
        return staging[: stored.end - stored.begin].view(stored.dtype).view(stored.shape)

    def write(tensor: torch.Tensor) -> None:
        if writer is not None:
            writer.write(memoryview(_bytes_of(tensor)))

    parts: dict[str, int] = {}
    for item in plan:
        if item.layer is not None:
            parts[item.layer] = parts.get(item.layer, 0) + 1
    packer = _Packer(parts)
    try:
        with open(weights, "rb") as file, torch.no_grad():
            for item in plan:
                stored = item.stored
                if item.role == "param":
                    target = targets[item.name]
                    if stored.dtype == target.dtype:
                        _read_into(file, stored, target)
                    else:
                        target.copy_(_read_into(file, stored, stage(stored)))
                    write(target)
                elif item.role == "weight":
                    weight = int8_weight(_read_into(file, stored, stage(stored)).float())
                    write(torch.tensor(weight.q_scale(), dtype=torch.float64))
                    write(torch.tensor(weight.q_zero_point(), dtype=torch.int64))
                    write(weight)
                    packer.add(item.layer, "weight", weight)
                else:
                    bias = _read_into(file, stored, torch.empty(stored.shape, dtype=stored.dtype))
                    bias = bias.float()
                    write(bias)
                    packer.add(item.layer, "bias", bias)
        packer.install(model)
    finally:
        packer.close()


class _EntryReader:
    """Reads a conversion cache entry: its int8 layers on a thread of its own, packing them as
    they come, from before the model is built; the rest of the weights, once the model is
    there, in :meth:`fill`."""

    def __init__(self, entry: converted.Entry) -> None:
        self.entry = entry
        self._tensors: list[StoredTensor] = []
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not entry.path.is_file():
            return
        try:
            tensors, metadata = read_header(entry.path)
        except (InputError, OSError) as error:
            self._error = error
            return
        if metadata != entry.metadata:
            log.info("%s: converted for another key; converting again", entry.path)
            return
        self._tensors = tensors
        weights = [stored.name for stored in tensors if stored.dtype == torch.int8]
        layers = {name.rpartition(".")[0] for name in weights}
        names = {stored.name for stored in tensors}
        self._packer = _Packer({layer: 1 + (f"{layer}.bias" in names) for layer in layers})
        self._thread = threading.Thread(target=self._read_layers, args=(layers,), daemon=True)
        self._thread.start()

    def _read_layers(self, layers: set[str]) -> None:
        by_name = {stored.name: stored for stored in self._tensors}
        try:
            with open(self.entry.path, "rb") as file:
                for stored in self._tensors:
                    layer, _, part = stored.name.rpartition(".")
                    if self._stop.is_set() or layer not in layers:
                        continue
                    if part == "bias":
                        bias = torch.empty(stored.shape, dtype=torch.float32)
                        self._packer.add(layer, "bias", _read_into(file, stored, bias))
                    elif stored.dtype == torch.int8:
                        scale = torch.empty((), dtype=torch.float64)
                        zero = torch.empty((), dtype=torch.int64)
                        _read_into(file, by_name[f"{stored.name}.scale"], scale)
                        _read_into(file, by_name[f"{stored.name}.zero_point"], zero)
                        weight = torch._empty_affine_quantized(
                            stored.shape,
                            scale=float(scale),
                            zero_point=int(zero),
                            dtype=torch.qint8,
                        )
                        self._packer.add(layer, "weight", _read_into(file, stored, weight))
        except Exception as error:  # handed to the loading thread, in fill
            self._error = error

    def fill(self, model: torch.nn.Module, plan: list[_Item], layout: list) -> bool:
        """Complete ``model`` from the entry; False where there is no usable one (a damaged
        entry is named in a warning), leaving weights for a conversion to overwrite."""
        if self._thread is None:
            if self._error is not None:
                log.warning("%s; converting again", self._error)
            return False
        found = [(t.name, _CODES[t.dtype], t.shape, t.end - t.begin) for t in self._tensors]
        try:
            if found != layout or self.entry.path.stat().st_size != self._tensors[-1].end:
                raise InputError(f"{self.entry.path}: damaged (its tensors are not the model's)")
            targets = dict(model.named_parameters())
            params = {item.name for item in plan if item.role == "param"}
            with open(self.entry.path, "rb") as file, torch.no_grad():
                for stored in self._tensors:
                    if stored.name in params:
                        _read_into(file, stored, targets[stored.name])
            self._thread.join()
            if self._error is not None:
                raise self._error
            self._packer.install(model)
        except Exception as error:  # a damaged entry is converted again, never an error
            log.warning("%s; converting again", error)
            return False
        finally:
            self.close()
        return True

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._packer.close()


def _empty_model(architecture: str, config: Wav2Vec2Config, dtype: torch.dtype) -> torch.nn.Module:
    """The model allocated in ``dtype``, its memory not yet touched (so not yet resident). Its
    layers are made on the meta device (no weights initialised), then each weight is given
    memory of its own (not by ``to_empty``, whose meta path imports torch's compiler, 2.3 s)."""
    with torch.device("meta"):
        model = build(architecture, config)
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            setattr(module, name, torch.nn.Parameter(torch.empty(param.shape, dtype=dtype)))
    return model


def _state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """Every weight of a folder without ``model.safetensors``: its safetensors shards (listed
    in ``model.safetensors.index.json``) or ``pytorch_model.bin`` (read as plain tensors)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InputError(f"{index}: not a safetensors index (no weight_map)") from None
        return {name: t for shard in shards for name, t in read_safetensors(folder / shard)}
    pickled = folder / "pytorch_model.bin"
    if not pickled.is_file():
        raise InputError(f"{folder}: no model.safetensors, shards or pytorch_model.bin")
    try:
        return torch.load(pickled, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # any unpickling failure: the file is not plain weights
        raise InputError(f"{pickled}: not readable as torch weights ({error})") from None


def _load_state_dict(model: torch.nn.Module, folder: Path, weights: dict) -> None:
    """``weights`` into ``model`` by name (:func:`_matched`), in the model's types."""
    stored = [(name, tuple(tensor.shape)) for name, tensor in weights.items()]
    targets = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in zip(_matched(folder, stored, model), weights.values(), strict=True):
            if name is not None:
                targets[name].copy_(tensor)


def load_wav2vec2(
    folder: Path,
    dtype: torch.dtype,
    quantize: bool = False,
    architecture: str = "Wav2Vec2ForCTC",
    cache: bool = True,
) -> torch.nn.Module:
    """``architecture`` (``Wav2Vec2ForCTC``, or ``Wav2Vec2ForSequenceClassification`` for
    MMS-LID; :mod:`polyspeech.ctc.wav2vec2_network`) from ``folder`` in ``dtype``, every weight
    from ``model.safetensors`` (strict: a missing, unexpected or misshapen weight is an error
    naming it). With ``quantize``, each big linear layer gets int8 weights
    (:mod:`polyspeech.ctc.quantize`) quantised from the file's values as soon as they are read,
    so the model is never whole in ``dtype``; the rest is in ``dtype``. With ``cache`` too, the
    converted weights are read from the conversion cache, or written there
    (:mod:`polyspeech.ctc.converted`). A folder with other weight files (safetensors shards,
    ``pytorch_model.bin``) is read whole into the model in ``dtype``, and not quantised here."""
    weights = folder / "model.safetensors"
    config = Wav2Vec2Config.from_file(folder / "config.json")
    if not weights.is_file():
        model = _empty_model(architecture, config, dtype)
        _load_state_dict(model, folder, _state_dict(folder))
        return model.eval()
    entry = reader = writer = None
    if quantize and cache:
        entry = converted.entry_for(weights, folder / "config.json", architecture, dtype)
        reader = _EntryReader(entry)  # at work while the model is built
    try:
        model = _empty_model(architecture, config, dtype)
        plan = _plan(weights, model, quantize)
        if reader is not None:
            layout = _layout(plan, model)
            if reader.fill(model, plan, layout):
                return model.eval()
            writer = converted.EntryWriter(entry, layout)
    finally:
        if reader is not None:
            reader.close()
    try:
        _convert(model, weights, plan, writer)
    except BaseException:
        if writer is not None:
            writer.abandon()
        raise
    if writer is not None:
        writer.finish()
    return model.eval()


def convolutions_in_bf16(network: torch.nn.Module) -> None:
    """Run an int8 wav2vec2's convolutions (the feature encoder and the positional convolution)
    in bf16, in place, their inputs cast in and outputs cast back to float32 around them; the
    linear layers stay int8 and attention float32: faster than float32 convolutions where the
    processor has native bf16 (docs/benchmarks.md, "Speed and memory")."""
    model = network.wav2vec2
    for module in (model.feature_extractor, model.encoder.pos_conv_embed):
        module.to(torch.bfloat16)
        module.register_forward_pre_hook(_to_bf16)
        module.register_forward_hook(_to_float32)


def _to_bf16(_module: torch.nn.Module, inputs: tuple) -> tuple:
    return tuple(value.to(torch.bfloat16) for value in inputs)


def _to_float32(_module: torch.nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    return output.float()
