"""Keep the lines of a manifest whose every character a CTC model's vocabulary of their
language has (training a whole model further adds no output rows).

    python recipes/real_voices/known_characters.py MODEL IN.jsonl OUT.jsonl
"""

import sys

from polyspeech.ctc.model import CtcModel
from polyspeech.data.manifest import read_manifest, write_manifest
from polyspeech.text.normalize import normalize_text


def main(model: str, source: str, out: str) -> None:
    vocabularies = CtcModel(model, precision="float32")
    entries = list(read_manifest(source))
    known = {
        lang: set(vocabularies.vocabulary(lang).characters) | {" "}
        for lang in {entry.lang for entry in entries}
    }
    kept = [e for e in entries if set(normalize_text(e.text, e.lang)) <= known[e.lang]]
    write_manifest(out, kept)
    print(f"{out}: kept {len(kept)} of {len(entries)} lines")


if __name__ == "__main__":
    main(*sys.argv[1:])
