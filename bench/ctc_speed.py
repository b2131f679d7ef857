"""CTC transcription speed and peak memory: polyspeech against transformers' ASR pipeline.

A model with the exact shape of facebook/mms-1b-all (1280 wide, 48 layers, adapters of 16) is
built with random weights and saved in the MMS folder layout, so the compute is the real one.
Every run is a fresh process (its peak resident memory is its own), on the same speech audio
(``--smoke``: both of its runs in one process, which checks the code, not the peaks).

    python bench/ctc_speed.py                 # the full benchmark (about 10 GB of disk in /tmp)
    python bench/ctc_speed.py --smoke         # small model, 4 s, baseline and default, 1 process
    python bench/ctc_speed.py --skip pipeline:bfloat16   # where bf16 is emulated (very slow)

Prints a table and writes JSON (``--out``, default bench/results/ctc_speed.json), each run with
``speedup_vs_pipeline_fp32`` (the baseline's real-time factor over its own; null where the
baseline was skipped).
"""

from __future__ import annotations

import argparse
import json
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


def run_one(system: str, dtype_name: str, folder: Path, audio: Path) -> dict:
    import torch

    samples, _ = soundfile.read(audio, dtype="float32")  # both get the same 16 kHz samples
    started = time.perf_counter()
    if system == "pipeline":
        from transformers import pipeline

        recognizer = pipeline(
            "automatic-speech-recognition",
            model=str(folder),
            chunk_length_s=30,
            device=-1,
            dtype=getattr(torch, dtype_name),
        )
        loaded = time.perf_counter()
        text = recognizer({"raw": samples, "sampling_rate": 16000})["text"]
    else:
        from polyspeech import load

        model = load(str(folder), dtype=dtype_name)
        dtype_name = model.precision
        loaded = time.perf_counter()
        text = model.transcribe(samples, "eng").text
    done = time.perf_counter()
    return {
        "dtype_used": dtype_name,  # what "auto" chose
        "load_s": loaded - started,
        "transcribe_s": done - loaded,
        "chars": len(text),
        "peak_gb": peak_bytes() / 2**30,
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
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # FOLDER AUDIO SYSTEM:DTYPE...: a JSON list, one result per run in turn
        folder, audio, *pairs = args.child
        results = [run_one(*pair.split(":"), Path(folder), Path(audio)) for pair in pairs]
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
        build_model(work / "model", args.smoke)
        for seconds in sorted({s for _, _, s in runs}):
            build_audio(work / f"{seconds}.flac", seconds)
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
        json.dump({"smoke": args.smoke, "runs": rows}, stream, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
