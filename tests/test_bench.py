"""Every script under bench/ runs on the installed stack, at its smallest size, and writes the JSON
it promises.

The convention every bench script keeps: ``--smoke`` runs it at its smallest size (seconds, the
same code path), ``--out PATH`` is where its JSON goes; it prints a table and compares against a
baseline in the same run. The scripts are found by globbing bench/*.py, and each needs an entry in
SMOKE (its smallest-size arguments and the check of its JSON): a new one without fails here.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(path.name for path in BENCH.glob("*.py"))


def number(value) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def positive(value) -> bool:
    return number(value) and value > 0


def check_align_bench(report: dict) -> None:
    assert report["classes"] == 30
    runs = report["runs"]
    assert [run.get("error") for run in runs] == [None] * len(runs)  # a child's crash is a row
    assert {run["size"] for run in runs} == {"tiny"}
    systems = [run["system"] for run in runs]  # ctc-forced-aligner between them if installed
    assert systems[0] == "polyspeech" and systems[-1] == "numpy-full-table"
    for run in runs:
        assert positive(run["seconds"]) and positive(run["ns_per_cell"])
        assert positive(run["peak_mb"]) and number(run["extra_mb"])
        assert number(run["score"]) and isinstance(run["path_digest"], int)
    for run in runs[1:]:  # the same tie rules as polyspeech's kernel: the same best path
        assert run["same_path"] is True
        assert run["score_below_first"] == pytest.approx(0, abs=1e-3)
        assert positive(run["seconds_vs_first"])


def check_align_accuracy(report: dict) -> None:
    assert (report["model"], report["lang"], report["star"]) == ("builtin:align", "eng", False)
    assert 0.25 < report["minutes"] < 0.5 and report["lines"] > 1
    for key in ("median_ms", "p95_ms", "max_ms", "start_median_ms", "end_median_ms"):
        assert number(report[key]) and report[key] >= 0
    assert positive(report["align_s"]) and positive(report["baseline_over_ours"])
    assert report["median_ms"] < report["baseline_median_ms"] <= report["baseline_p95_ms"]


def check_batch_parts(report: dict) -> None:
    assert report["files"] == 2 and positive(report["audio_s"])
    assert report["precision"] in ("float32", "bfloat16", "int8")
    stages = report["stages"]
    assert set(stages) == {"vad", "forward", "fbank"}
    for stage in ("vad", "forward"):
        assert set(stages[stage]) == {"one_by_one_s", "together_s", "speedup"}
    assert set(stages["fbank"]) == {"kaldi_native_fbank_s", "ours_s", "speedup"}
    assert all(positive(value) for stage in stages.values() for value in stage.values())


def check_ctc_speed(report: dict) -> None:
    assert report["smoke"] is True
    runs = report["runs"]
    assert [(r["system"], r["dtype"]) for r in runs] == [
        ("pipeline", "float32"),
        ("polyspeech", "auto"),
    ]
    assert runs[1]["dtype_used"] in ("float32", "bfloat16", "int8")  # what auto chose
    for run in runs:
        for key in ("audio_s", "load_s", "transcribe_s", "rtf", "peak_gb"):
            assert positive(run[key]), key
        assert isinstance(run["chars"], int) and run["chars"] > 0
        assert positive(run["speedup_vs_pipeline_fp32"])
    assert runs[0]["speedup_vs_pipeline_fp32"] == 1.0


def check_ctc_train_step(report: dict) -> None:
    ways = ["per language (training)", "all characters, masked (baseline)"]
    assert report["smoke"] is True and report["steps"] == 1
    for key in ("losses", "seconds_per_step", "baseline_over_this"):
        assert list(report[key]) == ways
        assert all(positive(value) for value in report[key].values())
    losses = list(report["losses"].values())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)  # two ways of scoring the same loss
    assert report["baseline_over_this"][ways[1]] == 1.0


def check_int8_parts(report: dict) -> None:
    assert report["smoke"] is True and report["audio_s"] == 4
    for key in ("transcribe_s", "speedup_vs_bf16"):
        assert len(report[key]) == 5 and all(positive(v) for v in report[key].values())
    assert list(report["transcribe_s"]) == list(report["speedup_vs_bf16"])
    assert report["speedup_vs_bf16"]["bf16"] == 1.0


def check_serve_load(report: dict) -> None:
    assert (report["clients"], report["seconds"]) == (2, 1.0)
    assert (report["model"], report["dtype"], report["lm"]) == ("builtin:ctc", "auto", "none")
    assert isinstance(report["native_bf16"], bool)
    assert set(report["modes"]) == {"batching on", "batching off"}
    for mode in report["modes"].values():
        assert mode["errors"] == 0
        assert isinstance(mode["requests"], int) and mode["requests"] >= 0
        assert number(mode["requests_per_s"])
        # a mode whose requests all ended after its second has no latencies (one slow machine)
        for key in ("p50_s", "p99_s"):
            assert number(mode[key]) if mode["requests"] else mode[key] is None
        assert mode["mean_batch"] is None or positive(mode["mean_batch"])
    assert report["ratio"] is None or number(report["ratio"])


def check_speechllm_speed(report: dict) -> None:
    assert report["smoke"] is True and isinstance(report["threads"], int)
    assert report["decoding"]["num_beams"] >= 1
    rows = report["rows"]
    assert [row["run"] for row in rows] == [
        "encoder + adapter, 8 clips",
        "plain loop, generate per file",
        "polyspeech, batch 1",
        "polyspeech, batch 8",
    ]
    assert all(positive(row["seconds"]) for row in rows)
    decoded = rows[1:]
    # a random LLM decodes up to the length limits: every way does the same work
    assert len({row["tokens"] for row in decoded}) == 1 and decoded[0]["tokens"] > 0
    assert all(positive(row["tokens_per_s"]) and positive(row["vs_batch_1"]) for row in decoded)
    assert decoded[1]["vs_batch_1"] == 1.0


def check_threads_under_load(report: dict) -> None:
    conditions, variants = ["load", "no load"], ["default", "one", "before"]
    assert (report["audio_s"], report["repeats"]) == (3.0, 1) and positive(report["cpus"])
    assert list(report["medians"]) == conditions
    for times in report["medians"].values():
        assert list(times) == variants
        assert all(set(t) == {"median", "min", "max"} for t in times.values())
        assert all(positive(value) for t in times.values() for value in t.values())
    assert len(report["ratios"]) == 4 and all(positive(r) for r in report["ratios"].values())
    runs = report["runs"]
    assert sorted((r["condition"], r["variant"]) for r in runs) == sorted(
        (c, v) for c in conditions for v in variants
    )
    for run in runs:
        assert isinstance(run["threads"], int) and run["threads"] >= 1
        assert positive(run["load_s"]) and positive(run["transcribe_s"])
        assert isinstance(run["chars"], int) and number(run["load_average"])
    assert {r["threads"] for r in runs if r["variant"] == "one"} == {1}


@dataclass(frozen=True)
class Smoke:
    args: tuple[str, ...]  # the smallest size; ``--out PATH`` follows
    check: Callable[[dict], None]  # asserts on the JSON written


# Every bench script's entry, the heaviest first (they run two at a time).
SMOKE = {
    "threads_under_load.py": Smoke(("--smoke",), check_threads_under_load),
    "int8_parts.py": Smoke(("--smoke",), check_int8_parts),
    "ctc_speed.py": Smoke(("--smoke",), check_ctc_speed),
    "serve_load.py": Smoke(("--smoke",), check_serve_load),
    "speechllm_speed.py": Smoke(("--smoke",), check_speechllm_speed),
    "ctc_train_step.py": Smoke(("--smoke",), check_ctc_train_step),
    "align_accuracy.py": Smoke(("--smoke",), check_align_accuracy),
    "batch_parts.py": Smoke(("--smoke",), check_batch_parts),
    "align_bench.py": Smoke(("--smoke",), check_align_bench),
}


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str
    folder: Path  # the run's working folder, which holds its JSON alone
    out: Path


def smoke_run(script: str, folder: Path) -> Run:
    out = folder / "report.json"
    command = [sys.executable, str(BENCH / script), *SMOKE[script].args, "--out", str(out)]
    # one thread each: two runs share two cores, where OpenMP threads spinning for a
    # descheduled sibling made the tiny models' steps ten times slower
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the run's folder as its working folder: a script that ignored --out writes there
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    return Run(done.returncode, done.stdout, done.stderr, folder, out)


@pytest.fixture(scope="module")
def smoke_runs(request, tmp_path_factory) -> Iterator[dict[str, Future]]:
    """The selected scripts' smoke runs, two at a time: mostly single-threaded imports and model
    loads, so two at once take about half the time on two cores."""
    selected = set()
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if item.module is request.module and callspec and "script" in callspec.params:
            selected.add(callspec.params["script"])
    with ThreadPoolExecutor(2) as pool:
        yield {
            script: pool.submit(smoke_run, script, tmp_path_factory.mktemp(script[:-3]))
            for script in SMOKE
            if script in selected
        }


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_runs_at_its_smallest_size(script, smoke_runs):
    assert script in SMOKE, (
        f"bench/{script} has no entry in SMOKE: add its smallest-size arguments (it must take "
        "--smoke and --out PATH) and the check of its JSON"
    )
    run = smoke_runs[script].result()
    assert run.code == 0, f"exit status {run.code}:\n{run.stderr[-4000:]}"
    assert run.stdout.strip(), "it printed no table"
    assert [path.name for path in run.folder.iterdir()] == [run.out.name]  # nothing else written
    SMOKE[script].check(json.loads(run.out.read_text()))


@pytest.fixture
def numpy2_promotion() -> Iterator[None]:
    """NumPy 2's promotion rules (NEP 50) on NumPy 1 too: a Python int with a uint8 is a uint8."""
    if not hasattr(np, "_set_promotion_state"):  # NumPy 2.2 on: the only rules there are
        yield
        return
    before = np._get_promotion_state()
    np._set_promotion_state("weak")
    yield
    np._set_promotion_state(before)


def test_full_table_baseline_walks_back_past_state_255(numpy2_promotion):
    """align_bench's baseline walks its byte-wide back-pointers from states above 255: under
    NumPy 2 that overflowed (``OverflowError: Python integer ... out of bounds for uint8``)."""
    from polyspeech.align.viterbi import align

    spec = importlib.util.spec_from_file_location("align_bench", BENCH / "align_bench.py")
    align_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(align_bench)
    log_probs, tokens = align_bench.emissions(400, 150)  # 301 states
    labels, score = align_bench.numpy_full_table(log_probs, tokens)
    expected = align(log_probs, tokens)
    odd = expected.states % 2 == 1
    assert labels[odd].tolist() == tokens[expected.states[odd] // 2].tolist()
    assert not labels[~odd].any()  # blanks where polyspeech's path has blanks
    assert score == pytest.approx(expected.score, rel=1e-5)
