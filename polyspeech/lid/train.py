"""Training a language-ID head on the frozen shared base of one of our CTC models.

The base's 40 ms states of every clip are computed once and kept (float16); only the head
trains, on random crops as well as whole clips so that short clips are identified too. Dev
accuracy is measured on whole clips and on their first 3 seconds. The written folder holds the
base's weights file exactly as the CTC folder has it (so git stores a shipped copy once) and the
head (:mod:`polyspeech.lid.model`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from polyspeech.ctc.folder import load_conformer_base
from polyspeech.ctc.train import load_features
from polyspeech.errors import InputError
from polyspeech.files import read_config
from polyspeech.hub import resolve_model
from polyspeech.lid.model import LidHead, LidHeadConfig, lid_config
from polyspeech.training import make_optimiser, write_training_log

log = logging.getLogger(__name__)
SHORT_FRAMES = 75  # 3 s of 40 ms states: the short-clip accuracy


@dataclass(frozen=True)
class LidTrainConfig:
    max_steps: int = 3000
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 0.01
    batch_size: int = 64
    eval_every: int = 500
    log_every: int = 100
    crop_share: float = 0.5  # of the training clips cut to a random part ...
    min_crop_frames: int = 38  # ... of at least 1.5 s
    train_per_lang: int | None = None  # at most this many training clips per language
    dev_per_lang: int = 50
    seed: int = 0
    head: LidHeadConfig = field(default_factory=LidHeadConfig)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> LidTrainConfig:
        try:
            data = read_config(path, cls, "training config")
            head = LidHeadConfig(**data.pop("head", {}))
            return cls(**data, head=head)
        except (OSError, ValueError, TypeError) as error:
            raise InputError(f"{path}: not a language-ID training config ({error})") from None


@torch.no_grad()
def _states(base, pairs, batch: int = 16) -> list[torch.Tensor]:
    """The base's states of each clip (float16), computed in batches of similar length."""
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][1]))
    states: list[torch.Tensor | None] = [None] * len(pairs)
    for first in range(0, len(order), batch):
        group = order[first : first + batch]
        rows = [torch.from_numpy(pairs[i][1].astype(np.float32)) for i in group]
        lengths = torch.tensor([len(r) for r in rows])
        padded = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
        encoded, encoded_lengths = base.encode(padded, lengths)
        for row, i in enumerate(group):
            states[i] = encoded[row, : int(encoded_lengths[row])].half().clone()
    return states  # type: ignore[return-value]


def _batch(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(r) for r in rows])
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True).float(), lengths


@torch.no_grad()
def _accuracy(head: LidHead, states, labels: list[int], frames: int | None = None) -> float:
    head.eval()
    right = 0
    for first in range(0, len(states), 64):
        rows = [s[:frames] if frames else s for s in states[first : first + 64]]
        logits = head(*_batch(rows))
        right += int((logits.argmax(-1) == torch.tensor(labels[first : first + 64])).sum())
    head.train()
    return right / max(1, len(states))


def train_lid(
    train_manifests: Sequence[str | os.PathLike],
    dev_manifest: str | os.PathLike,
    base: str | os.PathLike,
    out: str | os.PathLike,
    config: LidTrainConfig,
    jobs: int = 1,
    dtype: str = "float32",
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """Train a LID head over ``base``'s frozen states on every language of the manifests;
    writes ``out/model`` (base + head) and ``out/training_log.json``; returns the log."""
    if dtype not in ("float32", "float16"):
        raise InputError(f"dtype {dtype!r}: the model is written in float32 or float16")
    folder = resolve_model(base).folder  # the base alone: no adapter is needed
    network, _ = load_conformer_base(folder)
    network.eval()
    paths = [Path(m) for m in train_manifests]
    train_pairs = load_features(paths, None, jobs, network.config, config.train_per_lang)
    labels = sorted({entry.lang for entry, _ in train_pairs})
    if len(labels) < 2:
        raise InputError(f"language ID needs two languages or more; the manifests hold {labels}")
    dev_pairs = load_features(
        [Path(dev_manifest)], set(labels), jobs, network.config, config.dev_per_lang
    )
    index = {lang: i for i, lang in enumerate(labels)}
    train_states, dev_states = _states(network, train_pairs), _states(network, dev_pairs)
    train_labels = [index[entry.lang] for entry, _ in train_pairs]
    dev_labels = [index[entry.lang] for entry, _ in dev_pairs]
    torch.manual_seed(config.seed)
    settings = replace(config.head, hidden_size=network.config.hidden_size)
    head = LidHead(settings, len(labels))
    optimizer, scheduler = make_optimiser(
        head.parameters(), config.learning_rate, config.weight_decay, config.warmup_steps,
        config.max_steps,
    )  # fmt: skip
    rng = np.random.default_rng(config.seed)
    history, recent, started = [], [], time.monotonic()
    head.train()
    for step in range(1, config.max_steps + 1):
        chosen = rng.integers(len(train_states), size=config.batch_size)
        rows = []
        for i in chosen:
            states = train_states[i]
            if rng.random() < config.crop_share and len(states) > config.min_crop_frames:
                length = int(rng.integers(config.min_crop_frames, len(states) + 1))
                start = int(rng.integers(0, len(states) - length + 1))
                states = states[start : start + length]
            rows.append(states)
        logits = head(*_batch(rows))
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(train_labels)[chosen])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        recent.append(loss.item())
        if on_step is not None:
            on_step(step, recent[-1])
        if step % config.log_every == 0:
            log.info("step %d loss %.3f", step, float(np.mean(recent)))
            recent.clear()
        if step % config.eval_every == 0 or step == config.max_steps:
            report = {
                "step": step,
                "minutes": round((time.monotonic() - started) / 60, 2),
                "loss": loss.item(),
                "dev_accuracy": _accuracy(head, dev_states, dev_labels),
                "dev_accuracy_3s": _accuracy(head, dev_states, dev_labels, SHORT_FRAMES),
            }
            history.append(report)
            log.info("step %d dev %s", step, report)
    _save(folder, head, lid_config(network.config, settings, labels), out, dtype)
    summary = {
        "config": asdict(config),
        "base": str(folder),
        "labels": labels,
        "train_clips": len(train_pairs),
        "steps": config.max_steps,
        "history": history,
    }
    write_training_log(out, summary)
    return summary


def _save(base: Path, head: LidHead, config: dict, out: str | os.PathLike, dtype: str) -> None:
    """``out/model``: config.json, the base's model.safetensors copied, head.safetensors in
    ``dtype``; it appears only when complete."""
    folder = Path(out) / "model"
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".model."))
    try:
        (staging / "config.json").write_text(json.dumps(config, indent=1))
        shutil.copyfile(base / "model.safetensors", staging / "model.safetensors")
        weights = {
            k: v.to(getattr(torch, dtype)).contiguous() for k, v in head.state_dict().items()
        }
        save_file(weights, staging / "head.safetensors")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
