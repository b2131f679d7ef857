"""The training curve of a speech-LLM run as a PNG: losses, dev CER per language, dev BLEU.

python recipes/speechllm/plot_curve.py work/speechllm/training_log.json recipes/speechllm/curve.png
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(log_path: str, png_path: str) -> None:
    history = json.load(open(log_path))["history"]
    minutes = [row["minutes"] for row in history]
    figure, (losses, rates) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("train_loss", "train"), ("asr_loss", "dev asr"), ("ast_loss", "dev ast")):
        points = [(row["minutes"], row[key]) for row in history if row.get(key) is not None]
        if points:
            losses.plot([m for m, _ in points], [v for _, v in points], marker="o", label=label)
    losses.set(xlabel="training minutes (2 CPU cores)", ylabel="loss per answer token")
    losses.set_yscale("log")
    losses.legend()
    for key in sorted({k for row in history for k in row if k.startswith("cer_")}):
        rates.plot(minutes, [100 * row[key] for row in history], marker="o", label=f"dev {key}")
    if any("bleu" in row for row in history):
        rates.plot(minutes, [row.get("bleu") for row in history], marker="s", label="dev BLEU")
    rates.set(xlabel="training minutes (2 CPU cores)", ylabel="CER % / BLEU")
    rates.legend()
    figure.suptitle("builtin:speechllm: conformer encoder (frozen) -> adapter -> Qwen2-style LM")
    figure.tight_layout()
    figure.savefig(png_path, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:3])
