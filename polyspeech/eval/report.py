"""Scoring a model on a manifest. Recognition: per-language CER and WER (MER for Chinese), macro
averages and the real-time factor; texts are normalised with ``normalize_text`` for the line's
language. Translation (lines with a ``translation``): per source language corpus BLEU and chrF
of the English against the reference, on the texts as written (sacrebleu's standard)."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

from polyspeech.audio import SAMPLE_RATE
from polyspeech.data.manifest import ManifestEntry, load_entry_audio, read_manifest
from polyspeech.errors import InputError
from polyspeech.eval.metrics import bleu, cer, chrf, error_rate
from polyspeech.text.normalize import normalize_text


class _Run:
    """Each manifest line the model can take, with its result; counts the time and skips."""

    def __init__(self, model, manifest, options: dict, on_line: Callable[[], None] | None):
        self.model, self.manifest, self.options, self.on_line = model, manifest, options, on_line
        self.skipped: dict[str, int] = defaultdict(int)
        self.audio_seconds = self.compute_seconds = 0.0

    def results(self, usable: Callable[[ManifestEntry], bool]) -> Iterator[tuple]:
        available = set(self.model.languages)
        for entry in read_manifest(self.manifest):
            if (available and entry.lang not in available) or not usable(entry):
                self.skipped[entry.lang] += 1
                continue
            samples = load_entry_audio(entry)
            started = time.perf_counter()
            lang = entry.lang if available else None
            result = self.model.transcribe(samples, lang, **self.options)
            self.compute_seconds += time.perf_counter() - started
            self.audio_seconds += len(samples) / SAMPLE_RATE
            yield entry, result
            if self.on_line is not None:
                self.on_line()

    @property
    def rtf(self) -> float:
        return self.compute_seconds / self.audio_seconds if self.audio_seconds else 0.0


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
    run = _Run(model, manifest, options, on_line)
    for entry, result in run.results(lambda entry: True):
        refs[entry.lang].append(normalize_text(entry.text, entry.lang))
        hyps[entry.lang].append(normalize_text(result.text, entry.lang))
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
        "task": "asr",
        "per_lang": per_lang,
        "macro_cer": sum(v["cer"] for v in per_lang.values()) / count,
        "macro_wer": sum(v["wer"] for v in per_lang.values()) / count,
        "rtf": run.rtf,
        "skipped": dict(run.skipped),
    }


def evaluate_translation(
    model,
    manifest: str | os.PathLike,
    batch_size: int = 8,
    vad: bool = True,
    on_line: Callable[[], None] | None = None,
) -> dict:
    """A speech LLM translating ``manifest``'s lines into English (task ast): ``{"per_lang":
    {source lang: {"n", "bleu", "chrf"}}, "macro_bleu", "macro_chrf", "rtf", "skipped"}``,
    scores 0-100. Lines without a ``translation``, or in a language the model lacks, are
    skipped and counted."""
    if model.family != "speechllm":
        raise InputError("translation is scored for speech LLMs; a CTC model only transcribes")
    refs: dict[str, list[str]] = defaultdict(list)
    hyps: dict[str, list[str]] = defaultdict(list)
    run = _Run(model, manifest, {"task": "ast", "batch_size": batch_size, "vad": vad}, on_line)
    for entry, result in run.results(lambda entry: bool(entry.translation)):
        refs[entry.lang].append(entry.translation)
        hyps[entry.lang].append(result.text)
    if not refs:
        raise InputError(f"{manifest}: no line with a translation the model can score")
    per_lang = {
        lang: {
            "n": len(refs[lang]),
            "bleu": bleu(refs[lang], hyps[lang], lang="eng"),
            "chrf": chrf(refs[lang], hyps[lang]),
        }
        for lang in sorted(refs)
    }
    return {
        "task": "ast",
        "per_lang": per_lang,
        "macro_bleu": sum(v["bleu"] for v in per_lang.values()) / len(per_lang),
        "macro_chrf": sum(v["chrf"] for v in per_lang.values()) / len(per_lang),
        "rtf": run.rtf,
        "skipped": dict(run.skipped),
    }


def format_table(report: dict) -> str:
    """A Markdown table of a report: rates in percent, or BLEU and chrF for translation."""
    if report["task"] == "ast":
        lines = ["| source lang | n | BLEU | chrF |", "|---|---:|---:|---:|"]
        for lang, row in report["per_lang"].items():
            lines.append(f"| {lang} | {row['n']} | {row['bleu']:.1f} | {row['chrf']:.1f} |")
        lines.append(
            f"| macro | {sum(r['n'] for r in report['per_lang'].values())} | "
            f"{report['macro_bleu']:.1f} | {report['macro_chrf']:.1f} |"
        )
        return "\n".join([*lines, *_footer(report)])
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
    return "\n".join([*lines, *_footer(report)])


def _footer(report: dict) -> list[str]:
    lines = [f"\nreal-time factor {report['rtf']:.3f}"]
    if report["skipped"]:
        lines.append(f"skipped: {report['skipped']}")
    return lines
