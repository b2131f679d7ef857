"""Fit a LID folder's temperature on held-out clips and write it into the folder's config.

    python recipes/lid/calibrate.py polyspeech/assets/lid work/rv-eng/dev.jsonl ...

Use clips the head never trained on, unlike the recordings it will be judged on (for
builtin:lid, the dev splits of the real-voices corpora). Clips in languages the model does not
know are left out. Prints accuracy, the share of wrong answers above p=0.9 and the mean log
loss, before and after.
"""

import json
import sys
from pathlib import Path

import numpy as np

from polyspeech.data.manifest import load_entry_audio, read_manifests
from polyspeech.lid.model import LidModel, fit_temperature


def _report(name: str, probabilities: np.ndarray, labels: np.ndarray) -> None:
    best = probabilities.argmax(1)
    wrong = best != labels
    sure = wrong & (probabilities.max(1) > 0.9)
    loss = -np.log(probabilities[np.arange(len(labels)), labels] + 1e-12).mean()
    print(
        f"{name}: accuracy {1 - wrong.mean():.3f}, wrong above 0.9: {int(sure.sum())} of "
        f"{int(wrong.sum())} wrong, log loss {loss:.3f}"
    )


def main(folder: str, *manifests: str) -> None:
    config_file = Path(folder) / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    model = LidModel(folder)
    model.temperature = 1.0  # its own probabilities, whatever temperature it has now
    entries = [e for e in read_manifests([Path(m) for m in manifests]) if e.lang in model.labels]
    labels = np.array([model.labels.index(e.lang) for e in entries])
    probabilities = model.probabilities([load_entry_audio(e) for e in entries])
    temperature = fit_temperature(np.log(probabilities + 1e-12), labels)
    _report(f"{len(entries)} clips, temperature 1", probabilities, labels)
    softened = np.exp(np.log(probabilities + 1e-12) / temperature)
    _report(f"temperature {temperature}", softened / softened.sum(1, keepdims=True), labels)
    config["temperature"] = temperature
    config_file.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:])
