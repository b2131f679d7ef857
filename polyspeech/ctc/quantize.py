"""int8 weights for the big linear layers of a CTC model (dynamic quantisation: activations
are quantised on the fly, outputs are float32), packed for torch's default engine (x86, fbgemm's
kernels). ``bench/int8_parts.py`` on an AMD EPYC with AVX-512 VNNI and bf16, 60 s of speech on
two threads: 13.4 s with them against 13.9 s packed for oneDNN (a run before: 13.5 s against
14.5 s; two more of these two variants alone: 14.6 and 14.0 s against 15.6 and 16.9 s). An
earlier choice of oneDNN here had been measured on one thread.

Adapters and output layers keep float32 weights, so adapters load and switch as before. Each
layer is made float32 and replaced on its own, so a model held in bf16 is never whole in
float32; the wav2vec2 loader replaces each layer as soon as its weights are read.
"""

from __future__ import annotations

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


def quantize_linear(network: torch.nn.Module, name: str) -> None:
    """Replace the linear layer ``name`` with its int8 form."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import default_dynamic_qconfig

    parent_name, _, attribute = name.rpartition(".")
    parent = network.get_submodule(parent_name)
    linear = getattr(parent, attribute).float()
    linear.qconfig = default_dynamic_qconfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch points eager-mode users to torchao
        setattr(parent, attribute, DynamicLinear.from_float(linear))


def quantize_linear_layers(network: torch.nn.Module) -> None:
    """Give every :func:`quantizable_linears` layer int8 weights, the rest float32, in place."""
    for name in quantizable_linears(network):
        quantize_linear(network, name)
    network.float()
