"""Scoring a model on a manifest. Recognition: per-language CER and WER (MER for Chinese), macro
averages and the real-time factor; texts are normalised with ``normalize_text`` for the line's
language. Translation (lines with a ``translation``): per source language corpus BLEU and chrF
of the English against the reference, on the texts as written (sacrebleu's standard). Language
ID: accuracy per language and the confusion matrix. Every report says where its model came
from (``source``: name, repository, resolved commit, hub), so a figure can be reproduced."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

from polyspeech.audio import SAMPLE_RATE
from polyspeech.data.manifest import ManifestEntry, load_entry_audio, read_manifest
from polyspeech.errors import DependencyError, InputError
from polyspeech.eval.metrics import bleu, cer, chrf, error_rate
from polyspeech.text.normalize import describe_normalization, normalize_text


class _Run:
    """Each manifest line the model can take, with its result; counts the time and skips. The
    first call also loads what a model loads lazily (a language's adapter, its LM, VAD): a
    second of the first line is recognised once, untimed, so the real-time factor is the
    steady one."""

    def __init__(self, model, manifest, options: dict, on_line: Callable[[], None] | None):
        self.model, self.manifest, self.options, self.on_line = model, manifest, options, on_line
        self.skipped: dict[str, int] = defaultdict(int)
        self.audio_seconds = self.compute_seconds = 0.0

    def results(self, usable: Callable[[ManifestEntry], bool]) -> Iterator[tuple]:
        available = set(self.model.languages)
        warm = False
        for entry in read_manifest(self.manifest):
            if (available and entry.lang not in available) or not usable(entry):
                self.skipped[entry.lang] += 1
                continue
            samples = load_entry_audio(entry)
            lang = entry.lang if available else None
            if not warm:
                self.model.transcribe(samples[:SAMPLE_RATE], language=lang, **self.options)
                warm = True
            started = time.perf_counter()
            result = self.model.transcribe(samples, language=lang, **self.options)
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
    fold_case: bool = True,
    drop_punctuation: bool = True,
) -> dict:
    """``model`` (a loaded CTC model or speech LLM) on ``manifest``: ``{"per_lang": {lang: {"n",
    "cer", "wer"}}, "macro_cer", "macro_wer", "rtf", "skipped", "normalization", "decoding",
    "source"}``.

    Rates are fractions. ``wer`` is MER for Chinese. Lines in languages the model lacks are
    skipped and counted under ``skipped``. Texts are normalised by :func:`normalize_text` with
    ``fold_case`` and ``drop_punctuation``. ``decoding`` says how the model decoded, ``lm`` as
    :meth:`polyspeech.ctc.model.CtcModel.decoding_lm` takes it.
    """
    options: dict = {"batch_size": batch_size, "vad_filter": vad}
    if model.family == "ctc":
        options["lm"] = lm
        chosen = model.decoding_lm(lm)
        decoding = "greedy" if chosen is None else f"beam search with the LM {chosen}"
    elif lm is not None:
        raise InputError("--lm is for CTC models; a speech LLM decodes with its own LM")
    else:
        decoding = "the speech LLM's own"
    refs: dict[str, list[str]] = defaultdict(list)
    hyps: dict[str, list[str]] = defaultdict(list)
    run = _Run(model, manifest, options, on_line)
    rules = (fold_case, drop_punctuation)
    utterances = []
    for entry, result in run.results(lambda entry: True):
        ref = normalize_text(entry.text, entry.lang, *rules)
        hyp = normalize_text(result.text, entry.lang, *rules)
        refs[entry.lang].append(ref)
        hyps[entry.lang].append(hyp)
        utterances.append(
            {"id": entry.id, "lang": entry.lang, "reference": entry.text,
             "hypothesis": result.text, "cer": cer([ref], [hyp]).rate}
        )  # fmt: skip
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
        "normalization": describe_normalization(*rules),
        "decoding": decoding,
        "source": model.source.describe(),
        "utterances": utterances,
    }


def evaluate_translation(
    model,
    manifest: str | os.PathLike,
    batch_size: int = 8,
    vad: bool = True,
    on_line: Callable[[], None] | None = None,
) -> dict:
    """A speech LLM translating ``manifest``'s lines into English (task ast): ``{"per_lang":
    {source lang: {"n", "bleu", "chrf"}}, "macro_bleu", "macro_chrf", "rtf", "skipped",
    "source"}``,
    scores 0-100. Lines without a ``translation``, or in a language the model lacks, are
    skipped and counted."""
    if model.family != "speechllm":
        raise InputError("translation is scored for speech LLMs; a CTC model only transcribes")
    refs: dict[str, list[str]] = defaultdict(list)
    hyps: dict[str, list[str]] = defaultdict(list)
    run = _Run(
        model, manifest, {"task": "translate", "batch_size": batch_size, "vad_filter": vad}, on_line
    )
    utterances = []
    for entry, result in run.results(lambda entry: bool(entry.translation)):
        refs[entry.lang].append(entry.translation)
        hyps[entry.lang].append(result.text)
        utterances.append(
            {"id": entry.id, "lang": entry.lang, "reference": entry.translation,
             "hypothesis": result.text}
        )  # fmt: skip
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
        "source": model.source.describe(),
        "utterances": utterances,
    }


def evaluate_lid(
    model,
    manifest: str | os.PathLike,
    max_seconds: float | None = None,
    on_line: Callable[[], None] | None = None,
) -> dict:
    """A language-ID model on ``manifest``: each line's most probable language against its
    ``lang``. ``{"per_lang": {lang: {"n", "accuracy"}}, "accuracy", "macro_accuracy",
    "confusion": {true: {guessed: count}}, "rtf", "skipped", "source"}``; with
    ``max_seconds``, only each clip's first seconds are heard. Lines in languages the model
    lacks are skipped."""
    confusion: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    skipped: dict[str, int] = defaultdict(int)
    audio_seconds = compute_seconds = 0.0
    utterances = []
    for entry in read_manifest(manifest):
        if entry.lang not in model.labels:
            skipped[entry.lang] += 1
            continue
        samples = load_entry_audio(entry)
        if max_seconds is not None:
            samples = samples[: int(max_seconds * SAMPLE_RATE)]
        if not utterances:  # warm-up, untimed (as _Run's)
            model.probabilities([samples[:SAMPLE_RATE]])
        started = time.perf_counter()
        best = model.ranked(model.probabilities([samples])[0], 1)[0]
        compute_seconds += time.perf_counter() - started
        audio_seconds += len(samples) / SAMPLE_RATE
        confusion[entry.lang][best.lang] += 1
        utterances.append(
            {"id": entry.id, "lang": entry.lang, "guessed": best.lang,
             "probability": best.prob}
        )  # fmt: skip
        if on_line is not None:
            on_line()
    if not confusion:
        raise InputError(f"{manifest}: no line in a language the model knows")
    per_lang = {
        lang: {"n": sum(row.values()), "accuracy": row[lang] / sum(row.values())}
        for lang, row in sorted(confusion.items())
    }
    total = sum(v["n"] for v in per_lang.values())
    return {
        "task": "lid",
        "per_lang": per_lang,
        "accuracy": sum(confusion[lang][lang] for lang in per_lang) / total,
        "macro_accuracy": sum(v["accuracy"] for v in per_lang.values()) / len(per_lang),
        "confusion": {lang: dict(sorted(row.items())) for lang, row in sorted(confusion.items())},
        "max_seconds": max_seconds,
        "rtf": compute_seconds / audio_seconds if audio_seconds else 0.0,
        "skipped": dict(skipped),
        "source": model.source.describe(),
        "utterances": utterances,
    }


def format_table(report: dict) -> str:
    """A Markdown table of a report: rates in percent, BLEU and chrF for translation, accuracy
    for language ID."""
    if report["task"] == "lid":
        lines = ["| lang | n | accuracy % |", "|---|---:|---:|"]
        for lang, row in report["per_lang"].items():
            lines.append(f"| {lang} | {row['n']} | {100 * row['accuracy']:.1f} |")
        n = sum(r["n"] for r in report["per_lang"].values())
        lines.append(f"| all | {n} | {100 * report['accuracy']:.1f} |")
        lines.append(f"| macro | {n} | {100 * report['macro_accuracy']:.1f} |")
        return "\n".join([*lines, *_footer(report)])
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


_MEASURES = {  # per task: (key, label, scale) of what a comparison shows; the first is the main
    "asr": [("cer", "CER %", 100), ("wer", "WER %", 100)],
    "ast": [("bleu", "BLEU", 1), ("chrf", "chrF", 1)],
    "lid": [("accuracy", "accuracy %", 100)],
}


def format_comparison(reports: dict[str, dict]) -> str:
    """Several models' reports on one manifest side by side (Markdown): per language the main
    measure (CER, BLEU or accuracy; WER/MER and chrF too), then macro, real-time factor and
    peak memory."""
    measures = _MEASURES[next(iter(reports.values()))["task"]]
    names = list(reports)
    header = ["lang", "n", *[f"{label} {name}" for _, label, _ in measures for name in names]]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    langs = sorted({lang for report in reports.values() for lang in report["per_lang"]})
    for lang in langs:
        rows = [reports[name]["per_lang"].get(lang) for name in names]
        n = next(row["n"] for row in rows if row)
        cells = [
            f"{scale * row[key]:.1f}" if row else "-" for key, _, scale in measures for row in rows
        ]
        lines.append(f"| {lang} | {n} | " + " | ".join(cells) + " |")
    macro = [
        f"{scale * reports[name]['macro_' + key]:.1f}"
        for key, _, scale in measures
        for name in names
    ]
    lines.append("| macro | | " + " | ".join(macro) + " |")
    lines.append("")
    lines.append("| model | real-time factor | peak memory |")
    lines.append("|---|---:|---:|")
    for name in names:
        peak = reports[name].get("peak_memory_bytes")
        memory = f"{peak / 1e9:.2f} GB" if peak else "-"
        lines.append(f"| {name} | {reports[name]['rtf']:.3f} | {memory} |")
    return "\n".join(lines)


def pyplot():
    """matplotlib's pyplot, drawing to files; a clear error where matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        raise DependencyError("plots need matplotlib: pip install 'polyspeech[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_comparison(reports: dict[str, dict], path: str | os.PathLike) -> None:
    """A PNG bar chart of each model's main measure per language and their macro average, each
    bar labelled with its value and each language with its number of lines, written whole or
    not at all."""
    from polyspeech.files import atomic_binary_file

    plt = pyplot()

    task = next(iter(reports.values()))["task"]
    key, label, scale = _MEASURES[task][0]
    langs = sorted({lang for report in reports.values() for lang in report["per_lang"]})
    counts = {
        lang: max(r["per_lang"][lang]["n"] for r in reports.values() if lang in r["per_lang"])
        for lang in langs
    }
    groups = [*langs, "macro"]
    figure, axes = plt.subplots(figsize=(max(6, 0.7 * len(groups) * len(reports)), 4))
    width = 0.8 / len(reports)
    for i, (name, report) in enumerate(reports.items()):
        values = [scale * report["per_lang"].get(lang, {}).get(key, float("nan")) for lang in langs]
        values.append(scale * report[f"macro_{key}"])
        bars = axes.bar([j + i * width for j in range(len(groups))], values, width, label=name)
        axes.bar_label(bars, fmt="%.1f", fontsize=7)
    ticks = [f"{lang}\nn={counts[lang]}" for lang in langs] + [f"macro\nn={sum(counts.values())}"]
    axes.set_xticks([j + 0.4 - width / 2 for j in range(len(groups))], ticks)
    axes.set(ylabel=label, title=f"{label} per language")
    axes.legend()
    figure.tight_layout()
    with atomic_binary_file(path) as stream:
        figure.savefig(stream, dpi=110, format="png")
    plt.close(figure)
