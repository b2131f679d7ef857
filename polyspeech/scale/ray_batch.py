"""Batch transcription of a manifest on Ray Data: audio decoded in CPU tasks, the model in a
pool of actors (one GPU each where the cluster has GPUs), results as JSON Lines shards.

Each model batch writes its own shard, ``part-<digest of its ids>.jsonl``, whole or not at all
(a temporary file, then a rename), so a shard on disk is always complete. A rerun reads the ids
the shards hold and skips them. A worker that dies has its actor restarted and its batches run
again by Ray; should a batch then be cut differently, its ids can land in two shards, so the
run ends by rewriting shards to hold each id once and checks that every input id is there.
A file that cannot be decoded or transcribed gets a line with an ``error`` instead of a result.
A hub id is resolved once, by the driver, and the workers load that commit (``ORG/NAME@<commit>``):
a branch that moves during the run does not reach a worker started, or restarted, later. Each
line records the model it came from (``source``: the name, repository, commit and hub).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from polyspeech.errors import InputError, PolyspeechError
from polyspeech.files import atomic_text_file

PATTERN = "part-*.jsonl"


def _shard_ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines() if line]


def done_ids(out: Path) -> set[str]:
    """The ids the shards under ``out`` already hold."""
    return {i for shard in sorted(out.glob(PATTERN)) for i in _shard_ids(shard)}


def _rows(manifest: Path) -> list[dict]:
    from polyspeech.data.manifest import read_manifest

    rows, seen = [], set()
    for number, entry in enumerate(read_manifest(manifest), 1):
        ident = entry.id or f"line-{number}"
        if ident in seen:
            raise InputError(f"{manifest}: id {ident!r} appears twice; ids must be unique")
        seen.add(ident)
        rows.append({
            "id": ident, "audio": entry.audio, "lang": entry.lang or "",
            "offset": -1.0 if entry.offset is None else entry.offset, "duration": entry.duration,
        })  # fmt: skip
    return rows


def pinned(model: str) -> str:
    """``model`` as the workers are to load it: a hub id resolved now, to its commit
    (``ORG/NAME@<commit>``; on ModelScope, whose routes name no commit, the revision asked for);
    a folder or builtin name as it is."""
    from polyspeech.hub import HUB_KINDS, MODELSCOPE, resolve_model

    source = resolve_model(model)
    if source.kind not in HUB_KINDS:
        return model
    prefix = MODELSCOPE if source.kind == "modelscope" else ""
    return f"{prefix}{source.repo_id}@{source.revision}"


def decode(batch: dict) -> dict:
    """A CPU task: each row's audio, 16 kHz (empty, with the reason, where it cannot be)."""
    from polyspeech.audio import load_audio

    samples, problems = [], []
    for audio, offset, duration in zip(
        batch["audio"], batch["offset"], batch["duration"], strict=True
    ):
        try:
            if offset >= 0:
                clip = load_audio(str(audio), offset=float(offset), duration=float(duration))
            else:
                clip = load_audio(str(audio))
            samples.append(clip)
            problems.append("")
        except PolyspeechError as error:
            samples.append(np.zeros(0, np.float32))
            problems.append(str(error))
    batch["samples"] = np.empty(len(samples), dtype=object)  # one array per row, any lengths
    for row, clip in enumerate(samples):
        batch["samples"][row] = clip
    batch["problem"] = np.array(problems, dtype=object)
    return batch


class Transcriber:
    """An actor: loads the model once, transcribes batches, writes one shard per batch."""

    def __init__(
        self,
        model: str,
        out: str,
        device: str,
        dtype: str,
        after_shard: Callable[[Path], None] | None,
    ) -> None:
        from polyspeech import load

        self.model, self.out = load(model, device=device, dtype=dtype), Path(out)
        self.source = self.model.source.describe()
        self.after_shard = after_shard

    def __call__(self, batch: dict) -> dict:
        ids = [str(i) for i in batch["id"]]
        lines: dict[int, dict] = {}
        usable = [row for row, problem in enumerate(batch["problem"]) if not problem]
        for row, problem in enumerate(batch["problem"]):
            if problem:
                lines[row] = {"id": ids[row], "audio": str(batch["audio"][row]), "error": problem}
        langs = [str(batch["lang"][row]) or None for row in usable]
        try:
            results = self.model.transcribe_many(
                [batch["samples"][r] for r in usable], language=langs
            )
        except PolyspeechError:  # one bad row (say, a language the model lacks): each alone
            results = []
            for row, lang in zip(usable, langs, strict=True):
                try:
                    results.append(
                        self.model.transcribe_many([batch["samples"][row]], language=[lang])[0]
                    )
                except PolyspeechError as error:
                    results.append(error)
        for row, result in zip(usable, results, strict=True):
            head = {"id": ids[row], "audio": str(batch["audio"][row])}
            lines[row] = (
                {**head, "error": str(result)}
                if isinstance(result, Exception)
                else {**head, **result.to_dict(), "source": self.source}
            )
        digest = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16]
        shard = self.out / f"part-{digest}.jsonl"
        with atomic_text_file(shard) as stream:
            for row in range(len(ids)):
                stream.write(json.dumps(lines[row], ensure_ascii=False) + "\n")
        if self.after_shard is not None:
            self.after_shard(shard)
        return {"id": np.array(ids, dtype=object)}


def _compact(out: Path) -> set[str]:
    """Rewrite shards so that each id is in one (the first, by name); returns the ids."""
    seen: set[str] = set()
    for shard in sorted(out.glob(PATTERN)):
        lines = [line for line in shard.read_text().splitlines() if line]
        kept = []
        for line in lines:
            ident = json.loads(line)["id"]
            if ident not in seen:
                seen.add(ident)
                kept.append(line)
        if not kept:
            shard.unlink()
        elif len(kept) < len(lines):
            with atomic_text_file(shard) as stream:
                stream.write("\n".join(kept) + "\n")
    return seen


def batch_transcribe(
    manifest: str | os.PathLike,
    model: str,
    out: str | os.PathLike,
    address: str | None = None,
    batch_size: int = 16,
    actors: int | None = None,
    dtype: str = "auto",
    on_batch=None,
    after_shard: Callable[[Path], None] | None = None,
) -> dict:
    """Transcribe every line of ``manifest`` not yet in ``out``'s shards; returns counts.

    ``address`` is a Ray cluster's (``auto``, ``ray://host:10001``); without it a local Ray
    runtime starts. ``actors`` model replicas run (default: one per GPU, else one per two CPUs);
    ``on_batch(n)`` is called as batches finish; ``after_shard(path)`` in the model worker
    once it has written a shard, before the batch counts as done (tests kill a worker there)."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise PolyspeechError("batch needs Ray: pip install 'polyspeech[scale]'") from None
    manifest, out = Path(manifest), Path(out)
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    rows = _rows(manifest)
    out.mkdir(parents=True, exist_ok=True)
    finished = done_ids(out)
    todo = [row for row in rows if row["id"] not in finished]
    if todo:
        model = pinned(model)  # before Ray starts: a bad id is one line, at once
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        cpus = int(ray.cluster_resources().get("CPU", 1))
        count = actors or (gpus or max(1, cpus // 2))
        per_actor = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        device = "cuda" if gpus else "cpu"
        dataset = (
            ray.data.from_items(todo)
            .map_batches(decode, batch_size=batch_size)
            .map_batches(
                Transcriber,
                batch_size=batch_size,
                fn_constructor_args=(model, str(out), device, dtype, after_shard),
                compute=ray.data.ActorPoolStrategy(size=count),
                max_restarts=-1,  # a dead worker comes back ...
                max_task_retries=-1,  # ... and its batches run again
                **per_actor,
            )
        )
        for batch in dataset.iter_batches(batch_size=None):
            if on_batch is not None:
                on_batch(len(batch["id"]))
    held = _compact(out)
    missing = [row["id"] for row in rows if row["id"] not in held]
    if missing:
        raise PolyspeechError(f"{out}: {len(missing)} ids have no result, e.g. {missing[0]}")
    errors = sum(
        "error" in json.loads(line)
        for shard in out.glob(PATTERN)
        for line in shard.read_text().splitlines()
        if line
    )
    return {"total": len(rows), "skipped": len(rows) - len(todo), "run": len(todo),
            "errors": errors}  # fmt: skip
