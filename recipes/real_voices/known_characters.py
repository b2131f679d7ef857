"""Keep the lines of a manifest whose every character a CTC model's vocabulary of their
language has (training a whole model further adds no output rows).

    python recipes/real_voices/known_characters.py MODEL IN.jsonl OUT.jsonl
"""

import sys

from polyspeech.data.manifest import read_manifest, write_manifest
from polyspeech.hub import resolve_model
from polyspeech.text.normalize import normalize_text
from polyspeech.text.vocab import load_vocabularies


def main(model: str, source: str, out: str) -> None:
    vocabularies = load_vocabularies(resolve_model(model).folder / "vocab.json")
    entries = list(read_manifest(source))
    known = {lang: set(vocabularies[lang].characters) | {" "} for lang in {e.lang for e in entries}}
    kept = [e for e in entries if set(normalize_text(e.text, e.lang)) <= known[e.lang]]
    write_manifest(out, kept)
    print(f"{out}: kept {len(kept)} of {len(entries)} lines")


if __name__ == "__main__":
    main(*sys.argv[1:])
