"""Scoring a recogniser on a manifest: per-language CER and WER (MER for Chinese), macro averages
and the real-time factor. Texts are normalised with ``normalize_text`` for the line's language."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable

from polyspeech.audio import SAMPLE_RATE
from polyspeech.data.manifest import load_entry_audio, read_manifest
from polyspeech.errors import InputError
from polyspeech.eval.metrics import cer, error_rate
from polyspeech.text.normalize import normalize_text


def evaluate_asr(
    model,
    manifest: str | os.PathLike,
    batch_size: int = 4,
    vad: bool = True,
    lm: str | os.PathLike | None = None,
    on_line: Callable[[], None] | None = None,
) -> dict:
    """``model`` (a loaded CTC model or speech LLM) on ``manifest``: ``{"per_lang": {lang: {"n",
    "cer", "wer"}}, "macro_cer", "macro_wer", "rtf", "skipped"}``.

    Rates are fractions. ``wer`` is MER for Chinese. Lines in languages the model lacks are
    skipped and counted under ``skipped``.
    """
    options: dict = {"batch_size": batch_size, "vad": vad}
    if lm is not None:
        if model.family != "ctc":
            raise InputError("--lm is for CTC models; a speech LLM decodes with its own LM")
        options["lm"] = lm
    refs: dict[str, list[str]] = defaultdict(list)
    hyps: dict[str, list[str]] = defaultdict(list)
    skipped: dict[str, int] = defaultdict(int)
    available = set(model.languages)
    audio_seconds = compute_seconds = 0.0
    for entry in read_manifest(manifest):
        if available and entry.lang not in available:
            skipped[entry.lang] += 1
            continue
        samples = load_entry_audio(entry)
        started = time.perf_counter()
        result = model.transcribe(samples, entry.lang if available else None, **options)
        compute_seconds += time.perf_counter() - started
        audio_seconds += len(samples) / SAMPLE_RATE
        refs[entry.lang].append(normalize_text(entry.text, entry.lang))
        hyps[entry.lang].append(normalize_text(result.text, entry.lang))
        if on_line is not None:
            on_line()
    per_lang = {
        lang: {
            "n": len(refs[lang]),
            "cer": cer(refs[lang], hyps[lang]).rate,
            "wer": error_rate(refs[lang], hyps[lang], lang).rate,
        }
        for lang in sorted(refs)
    }
    count = max(1, len(per_lang))
    return {
        "per_lang": per_lang,
        "macro_cer": sum(v["cer"] for v in per_lang.values()) / count,
        "macro_wer": sum(v["wer"] for v in per_lang.values()) / count,
        "rtf": compute_seconds / audio_seconds if audio_seconds else 0.0,
        "skipped": dict(skipped),
    }


def format_table(report: dict) -> str:
    """A Markdown table of a report, rates in percent."""
    lines = ["| lang | n | CER % | WER % |", "|---|---:|---:|---:|"]
    for lang, row in report["per_lang"].items():
        metric = " (MER)" if lang == "cmn" else ""
        lines.append(
            f"| {lang} | {row['n']} | {100 * row['cer']:.1f} | {100 * row['wer']:.1f}{metric} |"
        )
    lines.append(
        f"| macro | {sum(r['n'] for r in report['per_lang'].values())} | "
        f"{100 * report['macro_cer']:.1f} | {100 * report['macro_wer']:.1f} |"
    )
    lines.append(f"\nreal-time factor {report['rtf']:.3f}")
    if report["skipped"]:
        lines.append(f"skipped (no such language in the model): {report['skipped']}")
    return "\n".join(lines)
