"""Where batching several files pays on a CPU: each stage of CTC transcription, one file at a
time against all files together, on the committed examples (repeated to ``--files``).

Stages: silero-vad (``speech_regions``), the filterbank (ours against kaldi-native-fbank, the
reference; per file either way), and builtin:ctc's forward pass (one language's adapter).

    python bench/batch_parts.py            # 8 files, each stage timed 5 times, best kept
    python bench/batch_parts.py --dtype int8 --out /tmp/int8.json    # another precision
    python bench/batch_parts.py --smoke    # 2 files, once: checks the script

Prints a table and writes JSON (``--out``, default bench/results/batch_parts.json), with each
stage's ``speedup`` (one by one / together; for the filterbank, kaldi-native-fbank / ours).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def best_of(repeats: int, work) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def kaldi_native_fbank(samples: np.ndarray) -> np.ndarray:
    import kaldi_native_fbank as knf

    options = knf.FbankOptions()
    options.frame_opts.dither = 0.0
    options.mel_opts.num_bins = 80
    computer = knf.OnlineFbank(options)
    computer.accept_waveform(16000, np.ascontiguousarray(samples * 32768.0, np.float32))
    computer.input_finished()
    return np.array([computer.get_frame(i) for i in range(computer.num_frames_ready)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="auto", help="builtin:ctc's precision")
    parser.add_argument("--out", type=Path, default=Path("bench/results/batch_parts.json"))
    parser.add_argument("--smoke", action="store_true", help="2 files, once (checks the script)")
    args = parser.parse_args()
    if args.smoke:
        args.files, args.repeats = 2, 1

    import polyspeech
    from polyspeech.audio import load_audio
    from polyspeech.audio.features import fbank
    from polyspeech.audio.vad import speech_regions
    from polyspeech.files import atomic_text_file

    rows = [json.loads(line) for line in (EXAMPLES / "examples.jsonl").read_text().splitlines()]
    clips = [load_audio(EXAMPLES / row["audio"]) for row in rows]
    files = [clips[i % len(clips)] for i in range(args.files)]
    model = polyspeech.load(dtype=args.dtype)  # auto: bf16 with native bf16, else int8
    model.log_probs(files[:2], "eng")  # warm up
    speech_regions(files[:1])
    stages = {
        "vad": (
            lambda: [speech_regions([f]) for f in files],
            lambda: speech_regions(files),
        ),
        "forward": (
            lambda: [model.log_probs([f], "eng") for f in files],
            lambda: model.log_probs(files, "eng"),
        ),
    }
    results = {}
    for name, (alone, together) in stages.items():
        one_by_one, batched = best_of(args.repeats, alone), best_of(args.repeats, together)
        results[name] = {
            "one_by_one_s": round(one_by_one, 4),
            "together_s": round(batched, 4),
            "speedup": round(one_by_one / batched, 2),
        }
    reference = best_of(args.repeats, lambda: [kaldi_native_fbank(f) for f in files])
    ours = best_of(args.repeats, lambda: [fbank(f) for f in files])
    results["fbank"] = {
        "kaldi_native_fbank_s": round(reference, 4),
        "ours_s": round(ours, 4),
        "speedup": round(reference / ours, 2),
    }
    seconds = sum(len(f) for f in files) / 16000
    print(f"{args.files} files, {seconds:.1f} s of audio, {model.precision}, best of "
          f"{args.repeats}")  # fmt: skip
    print(f"{'stage':<10}{'one by one s':>14}{'together s':>12}{'speedup':>9}")
    for name in stages:
        r = results[name]
        print(f"{name:<10}{r['one_by_one_s']:>14}{r['together_s']:>12}{r['speedup']:>8}x")
    f = results["fbank"]
    print(f"fbank: kaldi-native-fbank {f['kaldi_native_fbank_s']} s, ours {f['ours_s']} s "
          f"({f['speedup']}x)")  # fmt: skip
    summary = {"files": args.files, "audio_s": round(seconds, 2), "precision": model.precision,
               "stages": results}  # fmt: skip
    with atomic_text_file(args.out) as stream:
        stream.write(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
