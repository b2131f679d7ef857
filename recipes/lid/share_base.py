"""Store builtin:lid's base weights once: where polyspeech/assets/lid/model.safetensors is byte for
byte builtin:speechllm's encoder weights (both are builtin:ctc's frozen base), the LID folder's copy
goes and its config names the encoder's file and hash (``base_weights``, see polyspeech.lid.model).

    python recipes/lid/share_base.py            # share, if the two files are the same
    python recipes/lid/share_base.py --unshare  # the LID folder's own copy back (before the
                                                # speech LLM's folder is replaced)
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from polyspeech.files import atomic_text_file, file_sha256

ASSETS = Path(__file__).resolve().parents[2] / "polyspeech" / "assets"
LID, ENCODER = ASSETS / "lid", ASSETS / "speechllm" / "encoder"
SHARED = "../speechllm/encoder/model.safetensors"  # relative to the LID folder


def write_config(config: dict) -> None:
    with atomic_text_file(LID / "config.json") as stream:
        json.dump(config, stream, indent=1, ensure_ascii=False)
        stream.write("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--unshare", action="store_true")
    args = parser.parse_args()
    config = json.loads((LID / "config.json").read_text())
    own, encoder = LID / "model.safetensors", ENCODER / "model.safetensors"
    if args.unshare:
        if "base_weights" in config:
            shutil.copyfile(LID / config["base_weights"]["path"], own)
            del config["base_weights"]
            write_config(config)
        return
    if own.is_file() and encoder.is_file() and file_sha256(own) == file_sha256(encoder):
        config["base_weights"] = {"path": SHARED, "sha256": file_sha256(encoder)}
        write_config(config)
        own.unlink()
        print(f"{own}: the same as {encoder}; the LID config names that file instead")


if __name__ == "__main__":
    main()
