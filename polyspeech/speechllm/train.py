"""Training a speech LLM (MooER's recipe): the encoder frozen, the adapter and LoRA trained (or,
for a new LM built here, the whole LM).

Each sample draws its task (asr or ast) by the configured ratios from a generator seeded by the
step and its place in the global batch, so one process and several see the same samples with
the same tasks. Only the answer is learnt: the audio and prompt positions carry no label. The
loss is the mean over samples of each answer's mean token loss, so DDP's average over equal
shares of the global batch is the one-process loss. The loop runs under accelerate (one CPU
process, DDP over processes, a DeepSpeed config on GPUs); a checkpoint holds only what trains,
is written atomically and resumes where it stopped. A failing step stops the run with its step
and sample ids; nothing is caught and passed over.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from polyspeech.data.manifest import (
    ManifestEntry,
    load_entry_audio,
    read_manifest,
    read_manifests,
)
from polyspeech.data.shards import is_shard, read_shards
from polyspeech.distributed import agree
from polyspeech.errors import InputError
from polyspeech.eval.metrics import bleu, cer
from polyspeech.files import check_input_file, make_folder, read_config
from polyspeech.speechllm.build import NewSpeechLlmConfig, new_speechllm
from polyspeech.speechllm.folder import load_speechllm, save_speechllm
from polyspeech.speechllm.model import SpeechLlm
from polyspeech.text.normalize import normalize_text
from polyspeech.training import (
    load_checkpoint,
    make_accelerator,
    make_optimiser,
    save_checkpoint,
    write_training_log,
)

log = logging.getLogger(__name__)

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class SpeechLlmTrainConfig:
    max_steps: int = 2000
    max_minutes: float | None = None
    learning_rate: float = 1e-4  # MooER's
    warmup_steps: int = 100
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    batch_size: int = 8  # samples per batch in all processes together
    gradient_accumulation: int = 1  # batches per optimiser step
    eval_every: int = 200
    checkpoint_every: int = 200
    log_every: int = 20
    dev_size: int = 40  # dev samples scored per task
    seed: int = 0
    tasks: dict[str, float] = field(default_factory=lambda: {"asr": 1.0})
    train_adapter: bool = True
    train_lora: bool = True
    train_llm: bool = False  # the whole LLM trains (one made here from scratch), LoRA then off
    unfreeze_encoder_blocks: int = 0  # the last this many SAN-M blocks train too
    cache_encoder_states: bool = False  # keep each clip's frozen-encoder states in memory
    lora_r: int = 64  # MooER's LoRA: r 64, alpha 16, dropout 0.05, every projection
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = LORA_TARGETS

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> SpeechLlmTrainConfig:
        data = read_config(path, cls, "training config")
        if "lora_targets" in data:
            data["lora_targets"] = tuple(data["lora_targets"])
        return cls(**data)


def _answer(entry: ManifestEntry, task: str, multitask: bool) -> str:
    translation = entry.translation
    if task == "asr":
        return entry.text
    if not translation:
        raise InputError(f"{entry.id}: task ast needs a translation in the manifest line")
    return f"{entry.text}\n{translation}" if multitask else translation


def _task_of(entry: ManifestEntry, tasks: dict[str, float], rng: np.random.Generator) -> str:
    names = [t for t in tasks if t == "asr" or entry.translation]
    weights = np.array([tasks[t] for t in names], np.float64)
    return str(rng.choice(names, p=weights / weights.sum()))


def make_trainable(model: SpeechLlm, config: SpeechLlmTrainConfig) -> list[torch.nn.Parameter]:
    """Freeze all but the adapter, the LoRA weights (added unless the LLM has them: released
    LoRA weights keep training) or the whole LLM, and the last encoder blocks asked for."""
    from peft import LoraConfig, get_peft_model

    if config.train_llm and config.train_lora:
        raise InputError("train_llm trains the whole LLM: set train_lora to false with it")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    if config.train_llm:
        for parameter in model.llm.parameters():
            parameter.requires_grad_(True)
    if config.train_lora:
        if not hasattr(model.llm, "peft_config"):
            lora = LoraConfig(
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=list(config.lora_targets),
            )
            model.llm = get_peft_model(model.llm, lora)
        for name, parameter in model.llm.named_parameters():
            if "lora_" in name:
                parameter.requires_grad_(True)
    if config.train_adapter:
        for parameter in model.adapter.parameters():
            parameter.requires_grad_(True)
    if config.unfreeze_encoder_blocks:
        sanm = getattr(model.encoder, "sanm", None)
        if sanm is None:
            raise InputError("unfreeze_encoder_blocks needs a paraformer (SAN-M) encoder")
        for block in list(sanm.encoders)[-config.unfreeze_encoder_blocks :]:
            for parameter in block.parameters():
                parameter.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


class _CachedEncoder(nn.Module):
    """A frozen encoder whose states are kept per clip (keyed by a digest of its samples): each
    clip is encoded once, in the batch it first came in, and later epochs read it back. About
    73 kB per 3 s clip for a 192-wide encoder at 40 ms."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.inner = encoder
        self.output_size = encoder.output_size
        self.states: dict[bytes, torch.Tensor] = {}

    def forward(self, clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        keys = [hashlib.blake2b(clip.tobytes(), digest_size=16).digest() for clip in clips]
        missing = [i for i, key in enumerate(keys) if key not in self.states]
        if missing:
            with torch.no_grad():
                states, lengths = self.inner([clips[i] for i in missing])
            for row, i in enumerate(missing):
                self.states[keys[i]] = states[row, : int(lengths[row])].clone()
        rows = [self.states[key] for key in keys]
        lengths = torch.tensor([len(r) for r in rows], device=rows[0].device)
        return nn.utils.rnn.pad_sequence(rows, batch_first=True), lengths


def trainable_state(model: SpeechLlm) -> dict[str, torch.Tensor]:
    """The weights that train, by name: a checkpoint holds these and nothing else."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: SpeechLlm, state: dict[str, torch.Tensor], source: Path) -> None:
    parameters = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(parameters) != set(state):
        missing = sorted(set(parameters) - set(state))[:3]
        unexpected = sorted(set(state) - set(parameters))[:3]
        raise InputError(
            f"{source}: the checkpoint's weights are not the ones that train "
            f"(missing {missing}, unexpected {unexpected})"
        )
    with torch.no_grad():
        for name, value in state.items():
            parameters[name].copy_(value)


@dataclass
class _ManifestSample:
    entry: ManifestEntry

    def audio(self) -> np.ndarray:
        return load_entry_audio(self.entry)


SHUFFLE_BUFFER = 512  # shard samples held back to shuffle a stream


def global_batches(paths: list[Path], size: int, seed: int) -> Iterator[list]:
    """Endless global batches of samples (``.entry``, ``.audio()``), epoch after epoch, the same
    in every process. Manifests: a seeded permutation of all lines per epoch. Tar shards (all
    paths ``.tar``): the shards in a seeded order, read as a stream through a seeded shuffle
    buffer of 512 samples. A last incomplete batch of an epoch is left out."""
    shards = [is_shard(p) for p in paths]
    if any(shards) and not all(shards):
        raise InputError("give either manifests or tar shards for training, not both")
    if not all(shards):
        samples = [_ManifestSample(e) for e in read_manifests(paths)]
        if len(samples) < size:
            raise InputError(f"{len(samples)} training lines: fewer than one batch ({size})")
    for epoch in itertools.count():
        rng = np.random.default_rng([seed, epoch])
        if not all(shards):
            order = rng.permutation(len(samples))
            for first in range(0, len(order) - size + 1, size):
                yield [samples[i] for i in order[first : first + size]]
            continue
        batch, buffer, produced = [], [], 0
        stream = read_shards([paths[i] for i in rng.permutation(len(paths))])
        for sample in itertools.chain(stream, [None] * SHUFFLE_BUFFER):
            if sample is not None:
                buffer.append(sample)
            if buffer and (sample is None or len(buffer) > SHUFFLE_BUFFER):
                batch.append(buffer.pop(int(rng.integers(len(buffer)))))
            if len(batch) == size:
                yield batch
                batch, produced = [], produced + 1
        if not produced:
            raise InputError(f"the shards hold fewer samples than one batch ({size})")


@torch.no_grad()
def evaluate_dev(
    model: SpeechLlm, entries: list[ManifestEntry], tasks: dict[str, float], size: int
) -> dict[str, float]:
    """Dev loss per task, CER per language for asr and BLEU for ast (the model's own decoding)
    on up to ``size`` lines per task (for asr, per language)."""
    model.eval()
    report: dict[str, float] = {}
    eos = model.tokenizer.convert_tokens_to_ids("<|im_end|>")
    for task in [t for t in tasks if tasks[t] > 0]:
        if task == "asr":
            langs = sorted({e.lang for e in entries})
            chosen = [e for lang in langs for e in [x for x in entries if x.lang == lang][:size]]
        else:
            chosen = [e for e in entries if e.translation][:size]
        if not chosen:
            continue
        clips = [load_entry_audio(e) for e in chosen]
        prompt_task = "asr" if task == "asr" else "ast"
        losses = []
        for first in range(0, len(chosen), 8):
            group = chosen[first : first + 8]
            answers = [
                model.tokenizer(_answer(e, task, model.multitask))["input_ids"] + [eos]
                for e in group
            ]
            prompts = [model.prompt_ids(prompt_task)] * len(group)
            losses.append(float(model(clips[first : first + 8], prompts, answers)))
        report[f"{task}_loss"] = float(np.mean(losses))
        outputs = []
        for first in range(0, len(chosen), 8):
            outputs += model.answer(clips[first : first + 8], task)
        if task == "asr":
            for lang in sorted({e.lang for e in chosen}):
                pairs = [(e, o) for e, o in zip(chosen, outputs, strict=True) if e.lang == lang]
                refs = [normalize_text(e.text, lang) for e, _ in pairs]
                hyps = [normalize_text(o[0], lang) for _, o in pairs]
                report[f"cer_{lang}"] = cer(refs, hyps).rate
        else:
            refs = [e.translation for e in chosen]
            report["bleu"] = bleu(refs, [o[1] or "" for o in outputs], lang="eng")
    model.train()
    return report


def _training_texts(paths: list[Path]) -> Iterator[str]:
    """The transcripts and translations of manifests or tar shards."""
    shards = all(map(is_shard, paths))
    entries = (s.entry for s in read_shards(paths)) if shards else read_manifests(paths)
    for entry in entries:
        yield entry.text
        if entry.translation:
            yield entry.translation


def _new_base(paths: list[Path], init: NewSpeechLlmConfig, folder: Path) -> None:
    """Build a new speech LLM (tokenizer learnt from ``paths``' texts) into ``folder``,
    atomically: a run stopped while building leaves no half-written base behind."""
    model = new_speechllm(init, _training_texts(paths))
    building = folder.with_name(folder.name + ".partial")
    shutil.rmtree(building, ignore_errors=True)
    save_speechllm(model, building)
    os.replace(building, folder)


def train_speechllm(
    train_manifests: Sequence[str | os.PathLike],
    dev_manifest: str | os.PathLike | None,
    base: str | os.PathLike | None,
    out: str | os.PathLike,
    config: SpeechLlmTrainConfig,
    resume: bool = False,
    on_step: Callable[[int, float], None] | None = None,
    init: NewSpeechLlmConfig | None = None,
    dtype: str = "float32",
) -> dict:
    """Train ``base`` (a speech-LLM folder: ours or MooER's) on the manifests; writes
    ``out/model`` in our layout and ``out/training_log.json``; returns the log. With ``init``
    instead of ``base``, a new speech LLM is built first into ``out/base`` (kept, so a resumed
    run starts from the same one). ``dtype`` is that of the written model's weights (float32
    or float16)."""
    if dtype not in ("float32", "float16"):
        raise InputError(f"dtype {dtype!r}: the model is written in float32 or float16")
    if (base is None) == (init is None):
        raise InputError("give either a base speech LLM to train or an init config, not both")
    out = Path(out)
    checkpoint = out / "checkpoint.pt"
    accelerator = make_accelerator(gradient_accumulation_steps=config.gradient_accumulation)
    if config.batch_size % accelerator.num_processes:
        raise InputError(
            f"batch_size {config.batch_size} does not split over "
            f"{accelerator.num_processes} processes"
        )
    share = config.batch_size // accelerator.num_processes
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None:  # no data loader passes through accelerate to tell DeepSpeed
        plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = share
    paths = [Path(p) for p in train_manifests]
    for path in paths:  # a bad manifest fails before anything is written (read once: cheap)
        if is_shard(path):
            check_input_file(path, "shard")
        else:
            for _ in read_manifest(path):
                pass
    if init is not None:
        base = out / "base"
        if accelerator.is_main_process and not base.is_dir():
            _new_base(paths, init, base)
        accelerator.wait_for_everyone()
    torch.manual_seed(config.seed)
    model = load_speechllm(base, trainable=True)
    trainable = make_trainable(model, config)
    if config.cache_encoder_states:
        if config.unfreeze_encoder_blocks:
            raise InputError(
                "cache_encoder_states needs a frozen encoder (unfreeze_encoder_blocks 0)"
            )
        model.encoder = _CachedEncoder(model.encoder)
    batches = global_batches(paths, config.batch_size, config.seed)
    dev_entries = list(read_manifests([Path(dev_manifest)])) if dev_manifest else []
    make_folder(out)  # once the data and the model are known to be readable
    optimizer, scheduler = make_optimiser(
        trainable, config.learning_rate, config.weight_decay, config.warmup_steps,
        config.max_steps,
    )  # fmt: skip
    step, elapsed, history = 0, 0.0, []
    if resume and checkpoint.is_file():
        state = load_checkpoint(checkpoint, optimizer, scheduler)
        load_trainable_state(model, state["trainable"], checkpoint)
        step, elapsed, history = state["step"], state["elapsed"], state["history"]
        torch.set_rng_state(state["rng"])  # dropout draws on as if never stopped
        log.info("resumed at step %d", step)
    model.train()
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    eos = model.tokenizer.convert_tokens_to_ids("<|im_end|>")
    accumulation = config.gradient_accumulation
    for _ in range(step * accumulation):  # a resumed run goes on with the batch it stopped before
        next(batches)
    started = time.monotonic() - elapsed
    recent: list[float] = []
    since_eval: list[float] = []  # training losses since the last dev evaluation
    done = step >= config.max_steps
    offset = accelerator.process_index * share
    while not done:
        # one step: ``accumulation`` batches, their gradients summed before the optimiser steps
        losses = []
        for micro in range(accumulation):
            items = next(batches)[offset : offset + share]
            mine = [item.entry for item in items]
            draws = [config.seed, step * accumulation + micro]  # each sample's task, seeded
            tasks = [
                _task_of(e, config.tasks, np.random.default_rng([*draws, offset + i]))
                for i, e in enumerate(mine)
            ]
            try:
                clips = [item.audio() for item in items]
                prompts = [model.prompt_ids("asr" if t == "asr" else "ast") for t in tasks]
                answers = [
                    model.tokenizer(_answer(e, t, model.multitask))["input_ids"] + [eos]
                    for e, t in zip(mine, tasks, strict=True)
                ]
                # DDP syncs gradients on the last batch of the step only; backward divides the
                # loss by ``accumulation``, so a step's gradient is its batches' mean
                with accelerator.accumulate(wrapped):
                    loss = wrapped(clips, prompts, answers)
                    accelerator.backward(loss)
                    if micro == accumulation - 1:
                        accelerator.clip_grad_norm_(trainable, config.clip_norm)
                        optimizer.step()
                        scheduler.step()
                        optimizer.zero_grad()
            except InputError as error:  # a sample's own fault (its audio): one line
                ids = ", ".join(e.id or str(e.audio) for e in mine)
                raise InputError(f"step {step + 1} failed on samples {ids}: {error}") from None
            except Exception:  # a bug: its traceback goes on, the step and samples logged
                ids = ", ".join(e.id or str(e.audio) for e in mine)
                log.exception("step %d failed on samples %s", step + 1, ids)
                raise
            losses.append(loss.item())
        step += 1
        elapsed = time.monotonic() - started
        recent.append(float(np.mean(losses)))
        since_eval.append(recent[-1])
        if on_step is not None:
            on_step(step, recent[-1])
        if step % config.log_every == 0:
            log.info("step %d loss %.3f (%.2f min)", step, float(np.mean(recent)), elapsed / 60)
            recent.clear()
        out_of_time = config.max_minutes is not None and elapsed > 60 * config.max_minutes
        done = step >= config.max_steps or agree(accelerator, out_of_time)
        evaluating = step % config.eval_every == 0 or done
        if dev_entries and accelerator.is_main_process and evaluating:
            report = evaluate_dev(model, dev_entries, config.tasks, config.dev_size)
            trained = {"train_loss": float(np.mean(since_eval)) if since_eval else None}
            history.append({"step": step, "minutes": round(elapsed / 60, 2), **trained, **report})
            since_eval.clear()
            log.info("step %d dev %s", step, report)
        if accelerator.is_main_process and (step % config.checkpoint_every == 0 or done):
            save_checkpoint(
                checkpoint, optimizer, scheduler, step, elapsed, history,
                trainable=trainable_state(model), rng=torch.get_rng_state(),
            )  # fmt: skip
    summary = {
        "config": asdict(config),
        "processes": accelerator.num_processes,
        "steps": step,
        "minutes": round(elapsed / 60, 2),
    }
    summary["history"] = history
    if isinstance(model.encoder, _CachedEncoder):
        model.encoder = model.encoder.inner
    if accelerator.is_main_process:
        save_speechllm(model.to(getattr(torch, dtype)), out / "model")
        write_training_log(out, summary)
    accelerator.end_training()  # a process left in the group can abort at exit (gloo threads)
    return summary
