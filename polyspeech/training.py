"""What the three trainers (:mod:`polyspeech.ctc.train`, :mod:`polyspeech.lid.train`,
:mod:`polyspeech.speechllm.train`) share: the accelerator, the optimiser and its schedule
(AdamW, linear warm-up then cosine), checkpoints written atomically and read back to resume,
and ``training_log.json`` written atomically. Each trainer keeps only its model and its data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from polyspeech.errors import optional_module
from polyspeech.files import atomic_text_file, atomic_torch_save
from polyspeech.schedule import warmup_cosine


def make_accelerator(**options):
    """An ``accelerate.Accelerator`` on the GPU where there is one; without, processes launched
    together join over gloo on the CPU. ``options`` go to it as they are."""
    accelerate = optional_module("accelerate", "training", "train")
    return accelerate.Accelerator(cpu=not torch.cuda.is_available(), **options)


def make_optimiser(
    parameters,
    learning_rate: float,
    weight_decay: float,
    warmup_steps: int,
    max_steps: int,
    betas: tuple[float, float] = (0.9, 0.999),
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over ``parameters`` and its schedule: linear warm-up, then cosine to 0."""
    optimizer = torch.optim.AdamW(
        parameters, lr=learning_rate, betas=betas, weight_decay=weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup_steps, max_steps))
    return optimizer, schedule


def save_checkpoint(
    path: str | os.PathLike,
    optimizer,
    scheduler,
    step: int,
    elapsed: float,
    history: list,
    **state,
) -> None:
    """The run so far, atomically (a run stopped while writing keeps its last checkpoint):
    ``state`` holds what the trainer needs besides (its weights, its random state)."""
    atomic_torch_save(
        {
            **state,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "elapsed": elapsed,
            "history": json.dumps(history),
        },
        Path(path),
    )


def load_checkpoint(path: str | os.PathLike, optimizer, scheduler) -> dict:
    """A :func:`save_checkpoint`'s state, the optimiser and schedule restored from it; its
    ``history`` a list again."""
    state = torch.load(path, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return {**state, "history": json.loads(state["history"])}


def write_training_log(out: str | os.PathLike, summary: dict) -> None:
    """``out/training_log.json``, atomically."""
    with atomic_text_file(Path(out) / "training_log.json") as stream:
        json.dump(summary, stream, indent=1)
