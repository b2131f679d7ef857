"""`polyspeech batch` on a local Ray cluster (2 CPUs) over the synthetic corpus; a hub id reaches
the workers pinned to its commit."""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest

from polyspeech.ctc.model import CtcModel
from polyspeech.data.manifest import read_manifest, write_manifest
from polyspeech.errors import InputError
from polyspeech.scale.ray_batch import batch_transcribe, pinned
from tests.test_cli import use_offline_cache, write_hub_cache


@pytest.fixture(scope="module")
def worker_hf_cache(tmp_path_factory):
    """The Hugging Face cache of the Ray workers, offline: a worker keeps the environment Ray
    was started with, not the test's."""
    return tmp_path_factory.mktemp("hf-cache")


@pytest.fixture(scope="module")
def local_ray(worker_hf_cache):
    ray = pytest.importorskip("ray")
    env = {"HF_HUB_CACHE": str(worker_hf_cache), "HF_HUB_OFFLINE": "1"}
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env}
    )
    yield ray
    ray.shutdown()


def shard_lines(out):
    return [json.loads(line) for shard in sorted(out.glob("part-*.jsonl"))
            for line in shard.read_text().splitlines()]  # fmt: skip


def test_every_id_once_through_a_killed_worker_and_a_rerun(local_ray, tiny_corpus, tmp_path):
    entries = [e for e in read_manifest(tiny_corpus / "train.jsonl") if e.lang != "fin"][:24]
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, entries)
    (tmp_path / "broken.flac").write_bytes(b"not audio")
    with manifest.open("a") as stream:  # a file that cannot be decoded gets an error line
        stream.write(json.dumps({"audio": "broken.flac", "text": "", "lang": "eng",
                                 "duration": 1.0, "id": "broken"}) + "\n")  # fmt: skip
    out, killed = tmp_path / "out", tmp_path / "killed"

    def die_after_the_first_shard(shard):  # runs in the model worker, its first batch on disk
        try:
            with open(killed, "x") as mark:  # once: the worker Ray restarts goes on
                mark.write(shard.name)
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)

    summary = batch_transcribe(manifest, "builtin:ctc", out, batch_size=2, actors=1,
                               dtype="float32", after_shard=die_after_the_first_shard)  # fmt: skip
    assert killed.is_file(), "the model worker never wrote a shard"
    lines = shard_lines(out)
    ids = [line["id"] for line in lines]
    assert sorted(ids) == sorted([e.id for e in entries] + ["broken"])  # each exactly once
    assert summary == {"total": 25, "skipped": 0, "run": 25, "errors": 1}
    broken = next(line for line in lines if line["id"] == "broken")
    assert "broken.flac" in broken["error"]
    model = CtcModel("builtin:ctc", precision="float32")
    by_id = {line["id"]: line for line in lines}
    for entry in entries[:4]:
        assert by_id[entry.id]["text"] == model.transcribe(entry.audio, language=entry.lang).text
    before = {p: p.stat().st_mtime_ns for p in out.glob("part-*.jsonl")}
    again = batch_transcribe(manifest, "builtin:ctc", out, batch_size=2)
    assert again == {"total": 25, "skipped": 25, "run": 0, "errors": 1}
    assert {p: p.stat().st_mtime_ns for p in out.glob("part-*.jsonl")} == before


def test_a_rerun_transcribes_only_what_is_missing(local_ray, tiny_corpus, tmp_path, cli):
    entries = [e for e in read_manifest(tiny_corpus / "train.jsonl") if e.lang == "eng"][:4]
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, entries)
    out = tmp_path / "out"
    result = cli("batch", manifest, "--out", out, "--batch-size", "2", "--quiet")
    assert result.code == 0, result.stderr
    assert "4 files: 4 transcribed now, 0 done before, 0 with errors" in result.stdout
    first = sorted(out.glob("part-*.jsonl"))[0]
    lost = {line["id"] for line in shard_lines(out)} - set(_ids(first))
    first.unlink()  # as if that batch had never finished
    result = cli("batch", manifest, "--out", out, "--batch-size", "2", "--quiet")
    assert "4 files: 2 transcribed now, 2 done before" in result.stdout
    assert sorted(line["id"] for line in shard_lines(out)) == sorted(e.id for e in entries)
    assert lost <= {line["id"] for line in shard_lines(out)}
    write_manifest(tmp_path / "twice.jsonl", [entries[0], entries[0]])
    result = cli("batch", tmp_path / "twice.jsonl", "--out", out, "--quiet")
    assert result.code == 2 and "appears twice" in result.stderr
    result = cli("batch", manifest, "--out", out, "--batch-size", "0", "--quiet")
    assert result.code == 2 and "'--batch-size'" in result.stderr  # the parser's own check
    assert len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(InputError, match="--batch-size must be at least 1"):
        batch_transcribe(manifest, "builtin:ctc", out, batch_size=0)


def test_workers_load_the_commit_the_driver_resolved_though_the_branch_moves(
    local_ray, worker_hf_cache, tiny_corpus, conformer_folder, tmp_path, monkeypatch
):
    folder = conformer_folder[0]
    retrained = shutil.copytree(folder, tmp_path / "retrained")
    (retrained / "README.md").write_text("retrained\n")
    later = write_hub_cache(worker_hf_cache, "org/tiny", retrained)
    commit = write_hub_cache(worker_hf_cache, "org/tiny", folder)  # main: this one, for now
    use_offline_cache(monkeypatch, worker_hf_cache)
    entries = [e for e in read_manifest(tiny_corpus / "train.jsonl") if e.lang == "eng"][:6]
    write_manifest(tmp_path / "m.jsonl", entries)
    main = worker_hf_cache / "models--org--tiny" / "refs" / "main"

    def move_the_branch_and_die(shard):  # in the worker: its restart loads the model again
        if main.read_text() != later:
            main.write_text(later)
            os.kill(os.getpid(), signal.SIGKILL)

    summary = batch_transcribe(
        tmp_path / "m.jsonl", "org/tiny", tmp_path / "out", batch_size=2, actors=1,
        dtype="float32", after_shard=move_the_branch_and_die,
    )  # fmt: skip
    assert main.read_text() == later and summary["run"] == 6 and summary["errors"] == 0
    source = {"model": f"org/tiny@{commit}", "repo": "org/tiny", "revision": commit,
              "hub": "huggingface"}  # fmt: skip
    assert [line["source"] for line in shard_lines(tmp_path / "out")] == [source] * 6


def test_a_hub_id_is_pinned_to_its_commit_and_a_folder_or_builtin_name_kept(
    conformer_folder, tmp_path, monkeypatch
):
    folder = conformer_folder[0]
    commit = write_hub_cache(tmp_path / "hf-cache", "org/tiny", folder)
    use_offline_cache(monkeypatch, tmp_path / "hf-cache")
    assert pinned("org/tiny") == pinned("org/tiny@main") == f"org/tiny@{commit}"
    assert pinned(str(folder)) == str(folder) and pinned("builtin:ctc") == "builtin:ctc"


def _ids(shard):
    return [json.loads(line)["id"] for line in shard.read_text().splitlines()]
