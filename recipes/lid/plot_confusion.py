"""The confusion matrix of language-ID evaluations (``polyspeech evaluate --task lid --json``),
their counts added up, as a PNG: rows the spoken language, columns the one identified.

python recipes/lid/plot_confusion.py recipes/lid/confusion.png work/lid/a.json work/lid/b.json
"""

import json
import sys

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(png_path: str, *report_paths: str) -> None:
    reports = [json.load(open(path)) for path in report_paths]
    confusion: dict[str, dict[str, int]] = {}
    for report in reports:
        for spoken, row in report["confusion"].items():
            for identified, count in row.items():
                confusion.setdefault(spoken, {}).setdefault(identified, 0)
                confusion[spoken][identified] += count
    langs = sorted(set(confusion) | {g for row in confusion.values() for g in row})
    counts = np.array([[confusion.get(t, {}).get(g, 0) for g in langs] for t in langs], float)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    figure, axes = plt.subplots(figsize=(8, 7))
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(langs)), langs, rotation=90)
    axes.set_yticks(range(len(langs)), langs)
    axes.set(xlabel="identified", ylabel="spoken")
    for i in range(len(langs)):
        for j in range(len(langs)):
            if counts[i, j]:
                colour = "white" if shares[i, j] > 0.5 else "black"
                count = int(counts[i, j])
                axes.text(j, i, count, ha="center", va="center", color=colour, fontsize=7)
    seconds = reports[0].get("max_seconds")
    heard = f"first {seconds:g} s" if seconds else "whole clips"
    accuracy = np.trace(counts) / counts.sum()
    axes.set_title(f"builtin:lid, test splits ({heard}): accuracy {100 * accuracy:.1f}%")
    figure.tight_layout()
    figure.savefig(png_path, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:])
