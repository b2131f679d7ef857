"""What each part of the default CPU path for MMS models buys: the same 60 s of speech through
mms-1b-all's shape (random weights, as ``bench/ctc_speed.py`` builds it) in bf16, and in int8
packed for torch's default engine (x86, fbgemm's kernels) or oneDNN's, with float32 or bf16
convolutions. Each variant is a fresh process of two threads: it loads, warms up on 8 s, then
transcribes the 60 s once.

    python bench/int8_parts.py          # about 10 GB of disk in /tmp, some 7 minutes on 2 cores

Prints a table and writes JSON (default bench/results/int8_parts.json).
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

# name -> (dtype, packing engine, bf16 convolutions)
VARIANTS = {
    "bf16": ("bfloat16", "x86", False),
    "int8, x86 packing, float32 convolutions": ("int8", "x86", False),
    "int8, x86 packing, bf16 convolutions": ("int8", "x86", True),
    "int8, oneDNN packing, float32 convolutions": ("int8", "onednn", False),
    "int8, oneDNN packing, bf16 convolutions": ("int8", "onednn", True),
}


def run_variant(name: str, folder: Path, audio: Path) -> float:
    dtype, engine, convolutions = VARIANTS[name]
    torch.set_num_threads(2)
    torch.backends.quantized.engine = engine  # the int8 weights are packed for it
    model_module.native_bf16 = lambda: convolutions
    samples, _ = soundfile.read(audio, dtype="float32")
    model = model_module.CtcModel(folder, precision=dtype)
    model.transcribe(samples[: 8 * 16000], "eng")  # warm-up
    started = time.perf_counter()
    model.transcribe(samples, "eng")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=Path("bench/results/int8_parts.json"))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, folder, audio = args.child
        print(run_variant(name, Path(folder), Path(audio)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder, audio = Path(scratch, "model"), Path(scratch, "60.flac")
        build_model(folder, False)
        build_audio(audio, 60)
        for name in VARIANTS:
            command = [sys.executable, __file__, "--child", name, str(folder), str(audio)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[name] = round(float(output.strip().splitlines()[-1]), 1)
            print(f"{name:<46}{results[name]:>8} s")
    args.json.write_text(json.dumps({"audio_s": 60, "transcribe_s": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
