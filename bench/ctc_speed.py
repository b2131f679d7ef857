"""CTC transcription speed and peak memory: polyspeech against transformers' ASR pipeline.

A model with the exact shape of facebook/mms-1b-all (1280 wide, 48 layers, adapters of 16) is
built with random weights and saved in the MMS folder layout, so the compute is the real one.
Every run is a fresh process (its peak resident memory is its own), on the same speech audio
(``--smoke``: both of its runs in one process, which checks the code, not the peaks).

Loading first, side by side, each a fresh process that only loads, in ``--rounds`` rounds (the
median is reported): the pipeline in float32, polyspeech in int8 from cold (its conversion
cache emptied, :mod:`polyspeech.ctc.converted`) and from the cache the cold load wrote, and
polyspeech in float32; each with its peak resident memory once loaded. The cache lives in the
run's scratch folder; the transcription runs after it find it full.

    python bench/ctc_speed.py                 # the full benchmark (about 10 GB of disk in /tmp)
    python bench/ctc_speed.py --smoke         # small model, 4 s, baseline and default, 1 process
    python bench/ctc_speed.py --skip pipeline:bfloat16   # where bf16 is emulated (very slow)

Prints tables and writes JSON (``--out``, default bench/results/ctc_speed.json): ``load``, the
loading times and ``vs_pipeline_fp32`` ratios (each time over the pipeline's float32 load), and
``runs``, each with ``speedup_vs_pipeline_fp32`` (the baseline's real-time factor over its own;
null where the baseline was skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from polyspeech.eval.memory import peak_bytes
from polyspeech.files import atomic_text_file

RUNS = [
    ("pipeline", "float32", 60),
    ("pipeline", "bfloat16", 60),
    ("polyspeech", "auto", 60),  # the default: int8 for wav2vec2 on a CPU
    ("polyspeech", "bfloat16", 60),
    ("polyspeech", "float32", 60),
    ("polyspeech", "auto", 600),
]
# the smoke run: the baseline and polyspeech's default, on seconds of audio, in one process
SMOKE_SECONDS = 4
SMOKE_RUNS = [("pipeline", "float32", SMOKE_SECONDS), ("polyspeech", "auto", SMOKE_SECONDS)]
# the loading comparison: (column, system, dtype, conversion cache emptied first), in this order
LOADS = [
    ("pipeline float32", "pipeline", "float32", False),
    ("polyspeech int8, cold", "polyspeech", "int8", True),
    ("polyspeech int8, cached", "polyspeech", "int8", False),
    ("polyspeech float32", "polyspeech", "float32", False),
]


def build_model(folder: Path, small: bool) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    letters = list("abcdefghijklmnopqrstuvwxyz'")
    vocab = {"eng": {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>", "|", *letters])}}
    size = dict(  # the same layers, small (a smoke run)
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        conv_dim=(32,) * 7,
    )
    if not small:  # facebook/mms-1b-all
        size = dict(
            hidden_size=1280, num_hidden_layers=48, num_attention_heads=16, intermediate_size=5120
        )
    config = Wav2Vec2Config(
        **size,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        conv_bias=True,
        adapter_attn_dim=16,
        vocab_size=len(vocab["eng"]),
        architectures=["Wav2Vec2ForCTC"],
    )
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(config).eval()
    model.save_pretrained(folder)
    adapter = {name: p.detach().clone().contiguous() for name, p in model._get_adapters().items()}
    save_file(adapter, folder / "adapter.eng.safetensors")
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), target_lang="eng")
    extractor = Wav2Vec2FeatureExtractor(
        sampling_rate=16000, do_normalize=True, return_attention_mask=True
    )
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)


def build_audio(path: Path, seconds: int) -> None:
    """Speech (espeak-ng, English) with short pauses, ``seconds`` long."""
    import soxr

    from polyspeech.data.texts import load_texts
    from polyspeech.tts.espeak import get_espeak

    espeak, pieces, total = get_espeak(), [], 0
    for text in load_texts("eng").sentences:
        speech = soxr.resample(espeak.synthesize(text, "en-us"), espeak.sample_rate, 16000)
        pieces += [speech, np.zeros(8000, np.float32)]
        total += len(speech) + 8000
        if total >= seconds * 16000:
            break
    soundfile.write(path, np.concatenate(pieces)[: seconds * 16000], 16000)


def load_one(system: str, dtype_name: str, folder: Path):
    """The pipeline, or polyspeech's model, in ``dtype_name``; the imports are inside, so that
    a first load's time includes them, as a command's does."""
    import torch

    if system == "pipeline":
        from transformers import pipeline

        return pipeline(
            "automatic-speech-recognition",
            model=str(folder),
            chunk_length_s=30,
            device=-1,
            dtype=getattr(torch, dtype_name),
        )
    from polyspeech import load

    return load(str(folder), dtype=dtype_name)


def run_one(system: str, dtype_name: str, folder: Path, audio: Path) -> dict:
    samples, _ = soundfile.read(audio, dtype="float32")  # both get the same 16 kHz samples
    started = time.perf_counter()
    model = load_one(system, dtype_name, folder)
    loaded = time.perf_counter()
    if system == "pipeline":
        text = model({"raw": samples, "sampling_rate": 16000})["text"]
    else:
        dtype_name = model.precision
        text = model.transcribe(samples, language="eng").text
    done = time.perf_counter()
    return {
        "dtype_used": dtype_name,  # what "auto" chose
        "load_s": loaded - started,
        "transcribe_s": done - loaded,
        "chars": len(text),
        "peak_gb": peak_bytes() / 2**30,
    }


def compare_loads(work: Path, smoke: bool, rounds: int) -> dict:
    """Each of :data:`LOADS` in fresh processes (``smoke``: all in one), ``rounds`` times; a
    table of the medians and their ratios to the pipeline's float32 load."""
    seconds: dict[str, list[float]] = {column: [] for column, *_ in LOADS}
    peaks: dict[str, list[float]] = {column: [] for column, *_ in LOADS}
    averages = [os.getloadavg()[0]]
    for _ in range(rounds):
        groups = [LOADS] if smoke else [[load] for load in LOADS]
        for group in groups:
            if any(cold for *_, cold in group):  # smoke: the first int8 load of the group
                shutil.rmtree(work / "cache", ignore_errors=True)
            pairs = [f"{system}:{dtype_name}" for _, system, dtype_name, _ in group]
            command = [sys.executable, __file__, "--load-child", str(work / "model"), *pairs]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            for (column, *_), (took, peak) in zip(
                group, json.loads(output.strip().splitlines()[-1]), strict=True
            ):
                seconds[column].append(took)
                peaks[column].append(peak)
        averages.append(os.getloadavg()[0])
    median = {column: statistics.median(times) for column, times in seconds.items()}
    baseline = median[LOADS[0][0]]
    print(f"loading, median of {rounds} (load average {min(averages):.1f}-{max(averages):.1f}):")
    for column, *_ in LOADS:
        print(
            f"  {column:24s} {median[column]:6.1f} s ({median[column] / baseline:.2f}x the "
            f"pipeline's), peak {max(peaks[column]):.2f} GB",
            flush=True,
        )
    return {
        "rounds": rounds,
        "load_average": [min(averages), max(averages)],
        "seconds": seconds,
        "median_s": median,
        "vs_pipeline_fp32": {column: median[column] / baseline for column in median},
        "peak_gb": {column: max(values) for column, values in peaks.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="a small model, 4 s, one process (checks the script)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/ctc_speed.json"))
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="SYSTEM:DTYPE",
        help="leave a run out, e.g. pipeline:bfloat16 where the processor emulates bf16 "
        "(it took over 10 min for 60 s on an AVX2 machine)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of the loading comparison (default 3)"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--load-child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # FOLDER AUDIO SYSTEM:DTYPE...: a JSON list, one result per run in turn
        folder, audio, *pairs = args.child
        results = [run_one(*pair.split(":"), Path(folder), Path(audio)) for pair in pairs]
        print(json.dumps(results))
        return
    if args.load_child:  # FOLDER SYSTEM:DTYPE...: seconds and peak GB of each load in turn
        folder, *pairs = args.load_child
        results = []
        for pair in pairs:
            started = time.perf_counter()
            load_one(*pair.split(":"), Path(folder))
            results.append([time.perf_counter() - started, peak_bytes() / 2**30])
        print(json.dumps(results))
        return
    runs = SMOKE_RUNS if args.smoke else RUNS
    runs = [run for run in runs if f"{run[0]}:{run[1]}" not in args.skip]
    if not runs:
        parser.error("--skip leaves no run")
    # a fresh process per run; the smoke run checks the code, not the peaks: one for all
    groups = [runs] if args.smoke else [[run] for run in runs]
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        os.environ["POLYSPEECH_CACHE"] = str(work / "cache")  # the children's conversion cache
        build_model(work / "model", args.smoke)
        for seconds in sorted({s for _, _, s in runs}):
            build_audio(work / f"{seconds}.flac", seconds)
        loads = compare_loads(work, args.smoke, 1 if args.smoke else args.rounds)
        rows = []
        for group in groups:
            seconds = group[0][2]  # the smoke runs are all SMOKE_SECONDS long
            pairs = [f"{system}:{dtype_name}" for system, dtype_name, _ in group]
            command = [sys.executable, __file__, "--child", str(work / "model"),
                       str(work / f"{seconds}.flac"), *pairs]  # fmt: skip
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results = json.loads(output.strip().splitlines()[-1])
            for (system, dtype_name, _), result in zip(group, results, strict=True):
                row = {"system": system, "dtype": dtype_name, "audio_s": seconds, **result}
                row["rtf"] = row["transcribe_s"] / seconds  # runs differ in length: compare RTFs
                rows.append(row)
                print(
                    f"{system:11s} {dtype_name:8s} ({row['dtype_used']:8s}) {seconds:4d} s "
                    f"audio: {row['transcribe_s']:7.1f} s (RTF {row['rtf']:.3f}), "
                    f"load {row['load_s']:5.1f} s, peak {row['peak_gb']:.2f} GB",
                    flush=True,
                )
    baseline = next(
        (r["rtf"] for r in rows if (r["system"], r["dtype"]) == ("pipeline", "float32")), None
    )
    for row in rows:
        row["speedup_vs_pipeline_fp32"] = baseline / row["rtf"] if baseline else None
        if baseline:
            print(f"{row['system']:11s} {row['dtype']:8s} {row['audio_s']:4d} s audio: "
                  f"{row['speedup_vs_pipeline_fp32']:.2f}x pipeline float32's speed")  # fmt: skip
    with atomic_text_file(args.out) as stream:
        json.dump({"smoke": args.smoke, "load": loads, "runs": rows}, stream, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
