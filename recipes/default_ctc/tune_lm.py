"""Try character-LM decoding settings on a dev manifest: log-probabilities are computed once
(cached in a file), then each setting decodes them all and prints CER per language and macro,
scored as `polyspeech evaluate` scores (normalised, spaces not counted).

    python recipes/default_ctc/tune_lm.py MODEL DEV.jsonl CACHE.pkl LM:ALPHA:BETA:BEAM[:LANG...]

``LM`` is a folder of ``<lang>.arpa.gz`` (or ``none`` for greedy). Used on the dev split only,
so the settings chosen never see the test split.
"""

import pickle
import sys
import time
from pathlib import Path

import numpy as np
import torch

from polyspeech import load
from polyspeech.ctc.decode import (
    CharLmBeamDecoder,
    GreedyDecoder,
    language_model_file,
    load_character_lm,
)
from polyspeech.data.manifest import load_entry_audio, read_manifest
from polyspeech.eval.metrics import cer
from polyspeech.text.languages import is_written_without_spaces
from polyspeech.text.normalize import normalize_text


def main(model_dir: str, manifest: str, cache: Path, settings: list[str]) -> None:
    torch.set_num_threads(1)
    model = load(model_dir)
    if not cache.exists():
        rows = []
        for entry in read_manifest(manifest):
            log_probs = model.log_probs([load_entry_audio(entry)], entry.lang)[0]
            rows.append((entry.lang, entry.text, log_probs.astype(np.float32)))
        cache.write_bytes(pickle.dumps(rows))
    rows = pickle.loads(cache.read_bytes())
    for setting in settings:
        lm, alpha, beta, beam, *langs = setting.split(":")
        errors: dict[str, int] = {}
        lengths: dict[str, int] = {}
        started = time.time()
        for lang, text, log_probs in rows:
            if langs and lang not in langs:
                continue
            by_character = is_written_without_spaces(lang)
            vocabulary = model.vocabulary(lang)
            if lm == "none":
                decoder = GreedyDecoder(vocabulary, by_character)
            else:
                decoder = CharLmBeamDecoder(
                    vocabulary,
                    load_character_lm(language_model_file(lm, lang)),
                    by_character,
                    alpha=float(alpha),
                    beta=float(beta),
                    beam_width=int(beam),
                )
            hypothesis = ("" if by_character else " ").join(
                w.text for w in decoder.words(log_probs)
            )
            rate = cer(normalize_text(text, lang), normalize_text(hypothesis, lang))
            errors[lang] = (
                errors.get(lang, 0) + rate.substitutions + rate.deletions + rate.insertions
            )
            lengths[lang] = lengths.get(lang, 0) + rate.reference_length
        per_lang = {lang: round(100 * errors[lang] / lengths[lang], 1) for lang in sorted(errors)}
        macro = round(float(np.mean(list(per_lang.values()))), 1)
        print(f"{setting} macro {macro} {per_lang} ({time.time() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4:])
