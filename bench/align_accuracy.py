"""Long-form alignment accuracy: line boundaries found against the true ones.

A long recording of held-out synthetic sentences with known line boundaries
(``polyspeech.data.longform.long_recording``: random pauses, white noise 30 dB down) is
aligned to its transcript by ``polyspeech.align`` at line granularity, and the boundary errors
(starts and ends alike) are summarised. With ``--prefix 30``, 30 s of further sentences that
the transcript does not hold come first, and alignment uses ``<star>``.

    python bench/align_accuracy.py --minutes 10                 # builtin:align, English
    python bench/align_accuracy.py --minutes 10 --prefix 30     # untranscribed start, --star
    python bench/align_accuracy.py --model M --lang deu         # another model or language
    python bench/align_accuracy.py --smoke                      # seconds long, checks the script

The baseline is the alignment anyone gets for free: the recording cut into one span per line,
each as long as its share of the transcript's characters. Prints the error quantiles of both
and writes JSON (``--out``, default bench/results/align_accuracy.json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from polyspeech.audio import SAMPLE_RATE
from polyspeech.data.longform import long_recording
from polyspeech.files import atomic_text_file


def main() -> None:
    import polyspeech

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="builtin:align")
    parser.add_argument("--lang", default="eng")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--prefix", type=float, default=0.0, help="seconds not transcribed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="20 s of speech (checks the script)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/align_accuracy.json"))
    args = parser.parse_args()
    minutes = 1 / 3 if args.smoke else args.minutes

    samples, lines, truth = long_recording(args.lang, minutes, args.prefix, args.seed)
    started = time.perf_counter()
    result = polyspeech.align(
        samples, lines, args.lang, args.model, granularity="line", star=args.prefix > 0
    )
    seconds = time.perf_counter() - started
    found = np.array([(span.start, span.end) for span in result.line_spans])
    errors = np.abs(found - truth).ravel() * 1000
    baseline = np.abs(proportional_spans(lines, len(samples) / SAMPLE_RATE) - truth).ravel() * 1000
    summary = {
        "model": args.model,
        "lang": args.lang,
        "minutes": len(samples) / SAMPLE_RATE / 60,
        "prefix_s": args.prefix,
        "star": args.prefix > 0,
        "lines": len(lines),
        "median_ms": float(np.median(errors)),
        "p95_ms": float(np.percentile(errors, 95)),
        "max_ms": float(errors.max()),
        "start_median_ms": float(np.median(np.abs(found[:, 0] - truth[:, 0])) * 1000),
        "end_median_ms": float(np.median(np.abs(found[:, 1] - truth[:, 1])) * 1000),
        # signed: below zero, boundaries come early
        "start_mean_signed_ms": float(np.mean(found[:, 0] - truth[:, 0]) * 1000),
        "end_mean_signed_ms": float(np.mean(found[:, 1] - truth[:, 1]) * 1000),
        "align_s": seconds,
        "baseline_median_ms": float(np.median(baseline)),
        "baseline_p95_ms": float(np.percentile(baseline, 95)),
        # errors under a millisecond count as one: no division by zero
        "baseline_over_ours": float(np.median(baseline) / max(np.median(errors), 1.0)),
    }
    print(
        f"{args.model} {args.lang}: {summary['minutes']:.1f} min, {len(lines)} lines"
        f"{f', {args.prefix:.0f} s untranscribed first, --star' if args.prefix else ''}: "
        f"boundary error median {summary['median_ms']:.0f} ms, p95 {summary['p95_ms']:.0f} ms, "
        f"max {summary['max_ms']:.0f} ms (starts {summary['start_median_ms']:.0f}, ends "
        f"{summary['end_median_ms']:.0f}); aligned in {seconds:.1f} s"
    )
    print(
        f"mean signed error: starts {summary['start_mean_signed_ms']:+.0f} ms, ends "
        f"{summary['end_mean_signed_ms']:+.0f} ms"
    )
    print(
        f"baseline (spans by characters): median {summary['baseline_median_ms']:.0f} ms, "
        f"p95 {summary['baseline_p95_ms']:.0f} ms: {summary['baseline_over_ours']:.1f}x ours"
    )
    with atomic_text_file(args.out) as stream:
        json.dump(summary, stream, indent=1)


def proportional_spans(lines: list[str], seconds: float) -> np.ndarray:
    """The baseline: ``seconds`` cut into one span per line, in proportion to its characters."""
    ends = np.cumsum([len(line) for line in lines]) / sum(len(line) for line in lines) * seconds
    return np.stack([np.concatenate([[0.0], ends[:-1]]), ends], axis=1)


if __name__ == "__main__":
    main()
