"""CTC forced-alignment kernels on long inputs: time and peak memory.

Random log-softmax emissions over C = 30 classes (blank 0) and random tokens, the sizes of
20 minutes, 1 hour and 4 hours of 20 ms frames, aligned by polyspeech's kernel
(``polyspeech.align.viterbi``), ctc-forced-aligner (``pip install ctc-forced-aligner``, its
C++ kernel; left out if not installed) and a full-table Viterbi in numpy (back-pointers of a
byte per cell, the floor anyone can write). Every run is a fresh process: its peak resident
memory (``peak``) is its own, and ``extra`` is that peak less the process's size just before
the call (Python, the libraries and the emissions). Each path is compared with polyspeech's
(the same path, or another one and how much lower its score is); a crash is reported as such.

    python bench/align_bench.py                  # all sizes
    python bench/align_bench.py --sizes 20min    # one size
    python bench/align_bench.py --smoke          # seconds long, to check the script itself

Prints a table and writes JSON (``--out``, default bench/results/align_bench.json): each run's
time, memory and score, and against polyspeech's run of the same size its path, score and
time (``seconds_vs_first``: how many times polyspeech's time it took).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from polyspeech.eval.memory import current_bytes, peak_bytes
from polyspeech.files import atomic_text_file

CLASSES = 30
SIZES = {  # frames, tokens
    "tiny": (3000, 700),
    "20min": (60_000, 15_000),
    "1h": (180_000, 43_000),
    "4h": (720_000, 170_000),
}
# the full table needs frames x states bytes: 1.8 GB at 20 min, 15.5 GB at 1 hour
SYSTEMS = {
    "polyspeech": ("tiny", "20min", "1h", "4h"),
    "ctc-forced-aligner": ("tiny", "20min", "1h"),
    "numpy-full-table": ("tiny", "20min"),
}


def emissions(frames: int, tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Random log-softmax rows (float32, made in chunks) and random non-blank tokens."""
    rng = np.random.default_rng(0)
    log_probs = np.empty((frames, CLASSES), np.float32)
    for start in range(0, frames, 50_000):
        logits = rng.standard_normal((min(50_000, frames - start), CLASSES)).astype(np.float32)
        logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
        log_probs[start : start + len(logits)] = logits
    return log_probs, rng.integers(1, CLASSES, tokens)


def numpy_full_table(log_probs: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, float]:
    """Viterbi with the whole back-pointer table; the same tie rules as polyspeech's kernel."""
    frames, size = len(log_probs), 2 * len(tokens) + 1
    states = np.zeros(size, np.int64)
    states[1::2] = tokens
    skip = np.zeros(size, bool)
    skip[3::2] = tokens[1:] != tokens[:-1]
    pointers = np.zeros((frames, size), np.uint8)
    score = np.full(size, -np.inf)
    score[:2] = log_probs[0, states[:2]]
    one, two = np.full(size, -np.inf), np.full(size, -np.inf)
    for t in range(1, frames):
        one[1:] = score[:-1]
        two[2:] = np.where(skip[2:], score[:-2], -np.inf)
        move = np.where(one > score, 1, 0).astype(np.uint8)
        best = np.maximum(score, one)
        move[two > best] = 2
        score = np.maximum(best, two) + log_probs[t, states]
        pointers[t] = move
    state = size - 2 if size >= 2 and score[size - 2] > score[size - 1] else size - 1
    total = float(score[state])
    path = np.empty(frames, np.int64)
    for t in range(frames - 1, -1, -1):
        path[t] = state
        # a Python int: NumPy 2 would keep int - uint8 in uint8, which overflows past state 255
        state -= int(pointers[t, state])
    return states[path], total


def run_one(system: str, size: str) -> dict:
    frames, count = SIZES[size]
    log_probs, tokens = emissions(frames, count)
    if system == "polyspeech":
        from polyspeech.align.viterbi import align

        align(log_probs[:10], tokens[:3])  # compile first: the JIT is not the kernel's time

        def call():
            result = align(log_probs, tokens)
            labels = np.zeros(frames, np.int64)
            odd = result.states % 2 == 1
            labels[odd] = tokens[result.states[odd] // 2]
            return labels, result.score
    elif system == "ctc-forced-aligner":
        from ctc_forced_aligner import forced_align

        def call():
            paths, scores = forced_align(log_probs[None], tokens[None])
            return np.asarray(paths[0]), float(np.sum(scores))
    else:

        def call():
            return numpy_full_table(log_probs, tokens)

    before = current_bytes()
    started = time.perf_counter()
    labels, score = call()
    seconds = time.perf_counter() - started
    peak = peak_bytes()
    digest = int(np.dot(labels, np.arange(1, frames + 1) % 1009))
    return {
        "seconds": seconds,
        "peak_mb": peak / 2**20,
        "extra_mb": (peak - before) / 2**20,
        "score": score,
        "path_digest": digest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes", default="20min,1h,4h", help="comma-separated: " + ",".join(SIZES)
    )
    parser.add_argument("--smoke", action="store_true", help="only the tiny size")
    parser.add_argument("--out", type=Path, default=Path("bench/results/align_bench.json"))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(*args.child)))
        return
    sizes = ["tiny"] if args.smoke else args.sizes.split(",")
    unknown = sorted(set(sizes) - set(SIZES))
    if unknown:
        parser.error(f"--sizes: unknown {', '.join(unknown)} (expected {', '.join(SIZES)})")
    rows = []
    for size in sizes:
        frames, count = SIZES[size]
        for system, supported in SYSTEMS.items():
            if size not in supported:
                continue
            if system == "ctc-forced-aligner" and not _installed("ctc_forced_aligner"):
                print(f"{system}: not installed, left out")
                continue
            command = [sys.executable, __file__, "--child", system, size]
            done = subprocess.run(command, capture_output=True, text=True)
            row = {"system": system, "size": size, "frames": frames, "tokens": count}
            if done.returncode != 0:
                row["error"] = f"exit status {done.returncode}: {done.stderr.strip()[-200:]}"
                print(f"{size:6s} {system:19s} failed ({row['error'][:60]})", flush=True)
            else:
                row |= json.loads(done.stdout.strip().splitlines()[-1])
                row["ns_per_cell"] = row["seconds"] * 1e9 / (frames * (2 * count + 1))
                print(
                    f"{size:6s} {system:19s} {row['seconds']:8.2f} s "
                    f"({row['ns_per_cell']:.2f} ns a cell), peak {row['peak_mb']:7.0f} MB, "
                    f"of which the call {row['extra_mb']:7.0f} MB, score {row['score']:.2f}",
                    flush=True,
                )
            rows.append(row)
        done_rows = [row for row in rows if row["size"] == size and "error" not in row]
        for row in done_rows[1:]:  # against the first system's path, polyspeech's
            first = done_rows[0]
            row["same_path"] = row["path_digest"] == first["path_digest"]
            row["score_below_first"] = first["score"] - row["score"]
            row["seconds_vs_first"] = row["seconds"] / first["seconds"]
            print(
                f"{size:6s} {row['system']:19s} "
                + ("the same path" if row["same_path"] else "another path")
                + f", its score {row['score_below_first']:.3g} below {first['system']}'s, "
                f"{row['seconds_vs_first']:.1f}x its time"
            )
    with atomic_text_file(args.out) as stream:
        json.dump({"classes": CLASSES, "runs": rows}, stream, indent=1)
    print(f"wrote {args.out}")


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
