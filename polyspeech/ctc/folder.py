"""Model folders of the conformer CTC model, in the MMS layout.

``config.json`` (dimensions), ``model.safetensors`` (the shared base), one
``adapter.<lang>.safetensors`` per language (its adapter layers and output layer) and a nested
``vocab.json``. Weights load strictly: a missing or unexpected tensor is an error naming it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from polyspeech.ctc.conformer import ConformerConfig, ConformerCTC, LanguageAdapter
from polyspeech.text.vocab import Vocabulary, load_vocabularies, save_vocabularies
from polyspeech.weights import load_strict, loading_model, read_safetensors


def adapter_path(folder: Path, lang: str) -> Path:
    return folder / f"adapter.{lang}.safetensors"


def save_conformer(
    folder: str | os.PathLike,
    model: ConformerCTC,
    vocabularies: dict[str, Vocabulary],
    dtype: torch.dtype = torch.float32,
) -> None:
    """Write a model folder; it appears under ``folder`` only when complete."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        (staging / "config.json").write_text(json.dumps(model.config.to_dict(), indent=1))
        base = {
            key: tensor.to(dtype).contiguous()
            for key, tensor in model.state_dict().items()
            if not key.startswith("adapters.")
        }
        save_file(base, staging / "model.safetensors")
        for lang, adapter in model.adapters.items():
            weights = {k: t.to(dtype).contiguous() for k, t in adapter.state_dict().items()}
            save_file(weights, adapter_path(staging, lang))
        save_vocabularies(staging / "vocab.json", vocabularies)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_conformer_base(folder: Path) -> tuple[ConformerCTC, dict[str, Vocabulary]]:
    """The shared base (no adapters yet) and the vocabularies of every language."""
    with loading_model(folder):
        config = ConformerConfig.from_dict(json.loads((folder / "config.json").read_text()))
        model = ConformerCTC(config)
        weights = read_safetensors(folder / "model.safetensors")
        load_strict(model, weights, folder / "model.safetensors")
        vocabularies = load_vocabularies(folder / "vocab.json")
    return model, {lang: vocab for lang, vocab in vocabularies.items() if lang is not None}


def load_language_adapter(
    folder: Path, model: ConformerCTC, lang: str, vocabulary: Vocabulary
) -> LanguageAdapter:
    """Read ``adapter.<lang>.safetensors`` into a new adapter of ``model``."""
    adapter = LanguageAdapter(model.config, len(vocabulary))
    path = adapter_path(folder, lang)
    load_strict(adapter, read_safetensors(path), path)
    return adapter
