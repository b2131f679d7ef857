"""What each part of the default CPU path for MMS models buys: the same 60 s of speech through
mms-1b-all's shape (random weights, as ``bench/ctc_speed.py`` builds it) in bf16, and in int8
packed for torch's default engine (x86, fbgemm's kernels) or oneDNN's, with float32 or bf16
convolutions. Each variant is a fresh process of two threads: it loads, warms up on 8 s, then
transcribes the 60 s once.

    python bench/int8_parts.py          # about 10 GB of disk in /tmp, some 7 minutes on 2 cores
    python bench/int8_parts.py --smoke  # a small model, 4 s, every variant in one process

Prints a table and writes JSON (``--out``, default bench/results/int8_parts.json), with each
variant's ``speedup_vs_bf16`` (the bf16 baseline's time over its own).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile
import torch
from ctc_speed import build_audio, build_model

import polyspeech.ctc.model as model_module
from polyspeech.files import atomic_text_file

# name -> (dtype, packing engine, bf16 convolutions)
VARIANTS = {
    "bf16": ("bfloat16", "x86", False),
    "int8, x86 packing, float32 convolutions": ("int8", "x86", False),
    "int8, x86 packing, bf16 convolutions": ("int8", "x86", True),
    "int8, oneDNN packing, float32 convolutions": ("int8", "onednn", False),
    "int8, oneDNN packing, bf16 convolutions": ("int8", "onednn", True),
}


def run_variant(name: str, folder: Path, audio: Path, warm_up_s: int) -> float:
    dtype, engine, convolutions = VARIANTS[name]
    torch.backends.quantized.engine = engine  # the int8 weights are packed for it
    model_module.native_bf16 = lambda: convolutions
    samples, _ = soundfile.read(audio, dtype="float32")
    model = model_module.CtcModel(folder, precision=dtype)
    model.transcribe(samples[: warm_up_s * 16000], language="eng")
    started = time.perf_counter()
    model.transcribe(samples, language="eng")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/int8_parts.json"))
    parser.add_argument(
        "--smoke", action="store_true", help="a small model, 4 s, one process (checks the script)"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    audio_s, warm_up_s = (4, 1) if args.smoke else (60, 8)
    if args.child:  # FOLDER AUDIO NAME...: {name: seconds} of each variant in turn
        folder, audio, *names = args.child
        if not args.smoke:  # a smoke run keeps the caller's thread count
            torch.set_num_threads(2)
        times = {name: run_variant(name, Path(folder), Path(audio), warm_up_s) for name in names}
        print(json.dumps(times))
        return
    # a fresh process per variant; the smoke run checks the code, not the timing: one for all
    groups = [list(VARIANTS)] if args.smoke else [[name] for name in VARIANTS]
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder, audio = Path(scratch, "model"), Path(scratch, f"{audio_s}.flac")
        build_model(folder, args.smoke)
        build_audio(audio, audio_s)
        for names in groups:
            command = [sys.executable, __file__, "--child", str(folder), str(audio), *names]
            if args.smoke:
                command.append("--smoke")
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results |= json.loads(output.strip().splitlines()[-1])
    baseline = results["bf16"]
    print(f"{'variant':<46}{'s':>8}{'bf16 / this':>13}")
    for name, seconds in results.items():
        print(f"{name:<46}{seconds:>8.1f}{baseline / seconds:>12.2f}x")
    report = {
        "smoke": args.smoke,
        "audio_s": audio_s,
        "transcribe_s": {name: round(seconds, 2) for name, seconds in results.items()},
        "speedup_vs_bf16": {
            name: round(baseline / seconds, 2) for name, seconds in results.items()
        },
    }
    with atomic_text_file(args.out) as stream:
        stream.write(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
