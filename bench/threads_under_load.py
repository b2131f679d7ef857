"""Transcription speed on shared cores: polyspeech's default threads against one thread, with
one competing busy process (``python -c 'while True: pass'``) and without.

One long file (the committed examples one after another, with half-second pauses, repeated to
``--seconds``) is transcribed by builtin:ctc (``--lang eng``, greedy: ``--lm none``), each run a
fresh process, in three variants:

- ``default``: polyspeech imported first (OpenMP threads spin briefly: ``GOMP_SPINCOUNT``
  1000), threads from :func:`polyspeech.threads.configure` (the usable CPUs that other
  processes leave idle);
- ``one``: the same on one thread (``configure(1)``), what ``OMP_NUM_THREADS=1`` gave;
- ``before``: torch imported before polyspeech, so libgomp keeps its long default spin, and
  torch's own default thread count: polyspeech before it configured threads.

Runs alternate (each repeat runs every variant, under load and without), since other work on a
shared machine shifts the timings; the table gives each one's median and range. The children
run without OMP_NUM_THREADS, OMP_WAIT_POLICY and GOMP_SPINCOUNT, to measure the defaults.

    python bench/threads_under_load.py                # 120 s of audio, 3 repeats
    python bench/threads_under_load.py --smoke        # 3 s of audio, once: checks the script

Prints a table and the ratios, and writes JSON (default bench/results/threads_under_load.json).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
VARIANTS = ("default", "one", "before")
CONDITIONS = ("load", "no load")
CLEARED = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")
BUSY = "while True: pass"
RATIOS = {  # name: (condition, variant, variant it is compared with)
    "load: default / one": ("load", "default", "one"),
    "load: before / one": ("load", "before", "one"),
    "no load: default / before": ("no load", "default", "before"),
    "no load: default / one": ("no load", "default", "one"),
}


def build_audio(path: Path, seconds: float) -> None:
    """The examples with half-second pauses, round and round, cut at ``seconds``."""
    import numpy as np
    import soundfile

    from polyspeech.audio import SAMPLE_RATE, load_audio

    pause = np.zeros(SAMPLE_RATE // 2, np.float32)
    clips = [piece for f in sorted(EXAMPLES.glob("*.flac")) for piece in (load_audio(f), pause)]
    needed = int(seconds * SAMPLE_RATE)
    rounds = -(-needed // sum(len(clip) for clip in clips))
    soundfile.write(path, np.concatenate(clips * rounds)[:needed], SAMPLE_RATE)


def run_child(variant: str, audio: Path) -> dict:
    """One variant's transcription, in this (fresh) process: load, warm up on 2 s, time."""
    started = time.perf_counter()
    if variant == "before":
        importlib.import_module("torch")  # before polyspeech: libgomp reads no spin count
    import polyspeech
    from polyspeech.threads import configure

    if variant != "before":
        configure(1 if variant == "one" else None)
    import torch

    samples = polyspeech.load_audio(audio)
    model = polyspeech.load("builtin:ctc")
    model.transcribe(samples[:32000], language="eng", lm="none")
    loaded = time.perf_counter()
    text = model.transcribe(samples, language="eng", lm="none").text
    done = time.perf_counter()
    return {
        "threads": torch.get_num_threads(),
        "load_s": loaded - started,
        "transcribe_s": done - loaded,
        "chars": len(text),
    }


def measure(variant: str, audio: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    command = [sys.executable, __file__, "--child", variant, str(audio)]
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0, help="audio length")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant")
    parser.add_argument("--smoke", action="store_true", help="3 s of audio, once")
    parser.add_argument("--out", type=Path, default=Path("bench/results/threads_under_load.json"))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child[0], Path(args.child[1]))))
        return
    if args.smoke:
        args.seconds, args.repeats = 3.0, 1
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        audio = Path(scratch) / "speech.wav"
        build_audio(audio, args.seconds)
        for repeat in range(args.repeats):
            for condition in CONDITIONS:
                busy = (
                    subprocess.Popen([sys.executable, "-c", BUSY]) if condition == "load" else None
                )
                try:
                    shift = repeat % len(VARIANTS)  # each variant goes first in turn
                    for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                        load_average = os.getloadavg()[0]
                        row = {"condition": condition, "variant": variant, "repeat": repeat}
                        row |= measure(variant, audio) | {"load_average": load_average}
                        runs.append(row)
                        print(
                            f"{condition:7s} {variant:7s} {row['threads']} threads: "
                            f"{row['transcribe_s']:6.2f} s (load average {load_average:.1f})",
                            flush=True,
                        )
                finally:
                    if busy is not None:
                        busy.kill()
                        busy.wait()
    table = {
        condition: {
            variant: summary(
                [
                    run["transcribe_s"]
                    for run in runs
                    if run["condition"] == condition and run["variant"] == variant
                ]
            )
            for variant in VARIANTS
        }
        for condition in CONDITIONS
    }
    print(f"\n{args.seconds:.0f} s of audio, {args.repeats} runs each, {os.cpu_count()} CPUs")
    print(f"{'condition':9s} {'variant':8s} {'median s':>9s} {'range s':>15s} {'RTF':>6s}")
    for condition, variants in table.items():
        for variant, times in variants.items():
            span = f"{times['min']:.2f}-{times['max']:.2f}"
            rtf = times["median"] / args.seconds
            print(f"{condition:9s} {variant:8s} {times['median']:9.2f} {span:>15s} {rtf:6.3f}")
    ratios = {
        name: table[condition][top]["median"] / table[condition][bottom]["median"]
        for name, (condition, top, bottom) in RATIOS.items()
    }
    # the same ratios repeat by repeat, their median: less moved by one disturbed run
    seconds = {(r["condition"], r["variant"], r["repeat"]): r["transcribe_s"] for r in runs}
    paired = {
        name: statistics.median(
            seconds[(condition, top, repeat)] / seconds[(condition, bottom, repeat)]
            for repeat in range(args.repeats)
        )
        for name, (condition, top, bottom) in RATIOS.items()
    }
    print(f"{'ratio':26s} {'of medians':>10s} {'paired':>7s}")
    for name, ratio in ratios.items():
        print(f"{name:26s} {ratio:9.2f}x {paired[name]:6.2f}x")
    result = {
        "audio_s": args.seconds,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "medians": table,
        "ratios": ratios,
        "paired_ratios": paired,
        "runs": runs,
    }
    from polyspeech.files import atomic_text_file, make_folder  # not before a child's torch

    make_folder(args.out.parent)
    with atomic_text_file(args.out) as out:
        out.write(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
