"""Copy a conformer CTC model folder with per-utterance mean normalisation turned on.

    python recipes/real_voices/utterance_mean.py SOURCE OUT

The weights are unchanged; the copy subtracts each utterance's own mean fbank instead of the
global one (``ConformerConfig.utterance_mean``), and is then trained further on it.
"""

import json
import shutil
import sys
from pathlib import Path

from polyspeech.hub import resolve_model


def main(source: str, out: str) -> None:
    folder = resolve_model(source).folder
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(folder, out)
    config_path = Path(out) / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["utterance_mean"] = True
    config_path.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:])
