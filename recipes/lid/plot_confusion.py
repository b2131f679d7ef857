"""The confusion matrix of a language-ID evaluation (``polyspeech evaluate --task lid --json``)
as a PNG: rows the spoken language, columns the one identified, shares of each row.

python recipes/lid/plot_confusion.py work/lid/test.json recipes/lid/confusion.png
"""

import json
import sys

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(report_path: str, png_path: str) -> None:
    report = json.load(open(report_path))
    confusion = report["confusion"]
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
    heard = f"first {report['max_seconds']:g} s" if report.get("max_seconds") else "whole clips"
    axes.set_title(f"builtin:lid, test split ({heard}): accuracy {100 * report['accuracy']:.1f}%")
    figure.tight_layout()
    figure.savefig(png_path, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:3])
