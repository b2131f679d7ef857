"""int8 weights for the big linear layers of a CTC model (dynamic quantisation: activations
are quantised on the fly, outputs are float32), packed for torch's default engine (x86, fbgemm's
kernels): on two threads it is faster than packing for oneDNN, which also keeps a copy of each
packed weight (docs/benchmarks.md, "Speed and memory").

Adapters and output layers keep float32 weights, so adapters load and switch as before. Each
layer is made float32 and replaced on its own, so a model held in bf16 is never whole in
float32; the wav2vec2 loader quantises each layer from the file as soon as its weights are read.

Quantising (:func:`int8_weight`) and packing (:func:`int8_linear`) are separate steps: the
int8 weights are what the conversion cache keeps (:mod:`polyspeech.ctc.converted`), while the
packed form is the engine's own and is made anew at each load.
"""

from __future__ import annotations

import functools
import warnings

import torch


def quantizable_linears(network: torch.nn.Module) -> list[str]:
    """Names of the linear layers that get int8 weights: all but adapters and output layers
    (a CTC head, a classifier and its projection)."""
    return [
        name
        for name, module in network.named_modules()
        if type(module) is torch.nn.Linear
        and "adapter" not in name
        and name.rsplit(".", 1)[-1] not in ("lm_head", "head", "classifier", "projector")
    ]


@functools.cache
def quiet_deprecation() -> None:
    """torch warns once a process, at the first quantised tensor made, that eager-mode
    quantisation is deprecated in favour of torchao; spend that warning quietly. Called before
    quantised tensors are made on other threads (warnings' filters are not thread-safe)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch._empty_affine_quantized((1,), scale=1.0, zero_point=0, dtype=torch.qint8)


def int8_weight(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` (float32) quantised as torch's dynamic quantisation does it: one symmetric
    scale for the whole tensor, from its smallest and largest values."""
    from torch.ao.quantization import default_dynamic_qconfig

    quiet_deprecation()
    observer = default_dynamic_qconfig.weight()
    observer(weight)
    scale, zero_point = observer.calculate_qparams()
    return torch.quantize_per_tensor(weight, float(scale), int(zero_point), torch.qint8)


def int8_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> torch.nn.Module:
    """A dynamic int8 linear layer of the quantised ``weight`` (out, in) and float32 ``bias``,
    packed once. ``DynamicLinear.from_float`` first packs a zero weight of the full size as a
    placeholder (a 5120x1280 layer: 47 ms, then 60 ms for the real one); here it is 1x1.
    Packing runs without Python's lock, so layers can be packed on several threads (after
    :func:`quiet_deprecation`)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    quiet_deprecation()
    layer = DynamicLinear(1, 1, dtype=torch.qint8)
    layer.out_features, layer.in_features = weight.shape
    layer.set_weight_bias(weight, bias)
    return layer


def quantize_linear(network: torch.nn.Module, name: str) -> None:
    """Replace the linear layer ``name`` with its int8 form."""
    parent_name, _, attribute = name.rpartition(".")
    parent = network.get_submodule(parent_name)
    linear = getattr(parent, attribute)
    bias = None if linear.bias is None else linear.bias.detach().float()
    setattr(parent, attribute, int8_linear(int8_weight(linear.weight.detach().float()), bias))


def quantize_linear_layers(network: torch.nn.Module) -> None:
    """Give every :func:`quantizable_linears` layer int8 weights, the rest float32, in place."""
    for name in quantizable_linears(network):
        quantize_linear(network, name)
    network.float()
