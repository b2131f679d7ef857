"""Reduce a model folder to its universal alignment adapter (und): the base, adapter.und and
vocab.json with und alone, so ``polyspeech align`` uses und for every language.

Run by `make align-model` on the copy it ships as polyspeech/assets/align.
"""

import sys
from pathlib import Path

from polyspeech.align.transcript import UNIVERSAL
from polyspeech.ctc.folder import adapter_path
from polyspeech.text.vocab import load_vocabularies, save_vocabularies

folder = Path(sys.argv[1])
vocabularies = load_vocabularies(folder / "vocab.json")
for lang in vocabularies:
    if lang != UNIVERSAL:
        adapter_path(folder, lang).unlink()
save_vocabularies(folder / "vocab.json", {UNIVERSAL: vocabularies[UNIVERSAL]})
