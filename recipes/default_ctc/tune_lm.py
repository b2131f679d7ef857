"""Try character-LM decoding settings on a dev manifest: log-probabilities are computed once
(cached in a file), then each setting decodes them all and prints CER per language and macro,
scored as `polyspeech evaluate` scores (normalised, spaces not counted).

    python recipes/default_ctc/tune_lm.py MODEL DEV.jsonl CACHE.pkl \
        LM:ALPHA:BETA:BEAM[:TONE][:LANG...] [--per-lang N] [--write]

``LM`` is a folder of ``<lang>.arpa.gz`` (or ``none`` for greedy); ``TONE`` a tone weight below
1 merges the tones first (``ToneMergingDecoder``; only for a language with an espeak-ng voice,
so name the languages after it). ``--per-lang`` keeps the
first N lines of each language. ``--write`` stores each language's best setting (the first of
equals) in the LM folder's ``decoding.json``, which beam search then uses for that language.
Used on the dev split only, so the settings chosen never see the test split.
"""

import argparse
import json
import pickle
import time
from pathlib import Path

import numpy as np
import torch

from polyspeech import load
from polyspeech.ctc.decode import (
    DECODING_SETTINGS,
    CharLmBeamDecoder,
    GreedyDecoder,
    ToneMergingDecoder,
    language_model_file,
    load_character_lm,
    toneless_classes,
)
from polyspeech.ctc.transcribe import window_log_probs
from polyspeech.data.manifest import load_entry_audio, read_manifest
from polyspeech.eval.metrics import cer
from polyspeech.text.languages import is_written_without_spaces
from polyspeech.text.normalize import normalize_text


def log_probs_of(model, manifest: str, per_lang: int | None, cache: Path) -> list:
    """(lang, text, log-probabilities) of each kept line, heard whole as ``transcribe`` hears a
    piece (with its lead-in if it starts on speech), computed once into ``cache`` (which is read
    as it is from then on: delete it for another model or ``--per-lang``)."""
    if not cache.exists():
        rows, counts = [], {}
        for entry in read_manifest(manifest):
            counts[entry.lang] = counts.get(entry.lang, 0) + 1
            if per_lang is None or counts[entry.lang] <= per_lang:
                audio = load_entry_audio(entry)
                whole = [(audio, 0, len(audio))]
                _, log_probs = next(window_log_probs(model, whole, 0, [entry.lang], 1, lead=True))
                rows.append((entry.lang, entry.text, log_probs.astype(np.float32)))
        cache.write_bytes(pickle.dumps(rows))
    return pickle.loads(cache.read_bytes())


def _tone_and_langs(fields: list[str]) -> tuple[float, list[str]]:
    """A setting's optional tone weight (1 when absent) and its languages."""
    try:
        return float(fields[0]), fields[1:]
    except (IndexError, ValueError):
        return 1.0, fields


def score(model, rows: list, setting: str) -> dict[str, float]:
    """CER (%) per language of ``rows`` decoded with ``setting``."""
    lm, alpha, beta, beam, *rest = setting.split(":")
    tone, langs = _tone_and_langs(rest)
    errors: dict[str, int] = {}
    lengths: dict[str, int] = {}
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
            if tone < 1.0:
                decoder = ToneMergingDecoder(decoder, toneless_classes(vocabulary, lang), tone)
        hypothesis = ("" if by_character else " ").join(w.text for w in decoder.words(log_probs))
        rate = cer(normalize_text(text, lang), normalize_text(hypothesis, lang))
        errors[lang] = errors.get(lang, 0) + rate.substitutions + rate.deletions + rate.insertions
        lengths[lang] = lengths.get(lang, 0) + rate.reference_length
    return {lang: 100 * errors[lang] / lengths[lang] for lang in sorted(errors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("manifest")
    parser.add_argument("cache", type=Path)
    parser.add_argument("settings", nargs="+", help="LM:ALPHA:BETA:BEAM[:TONE][:LANG...]")
    parser.add_argument("--per-lang", type=int)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    folders = {setting.split(":")[0] for setting in args.settings}
    if args.write and (len(folders) != 1 or "none" in folders):
        parser.error("--write needs every setting on the same LM folder")
    torch.set_num_threads(1)
    model = load(args.model)
    rows = log_probs_of(model, args.manifest, args.per_lang, args.cache)
    best: dict[str, tuple[float, str]] = {}
    for setting in args.settings:
        started = time.time()
        per_lang = score(model, rows, setting)
        macro = float(np.mean(list(per_lang.values())))
        shown = {lang: round(rate, 1) for lang, rate in per_lang.items()}
        print(f"{setting} macro {macro:.1f} {shown} ({time.time() - started:.0f} s)", flush=True)
        for lang, rate in per_lang.items():
            if lang not in best or rate < best[lang][0]:
                best[lang] = (rate, setting)
    if args.write:
        chosen = {}
        for lang, (rate, setting) in sorted(best.items()):
            _, alpha, beta, beam, *rest = setting.split(":")
            chosen[lang] = {"alpha": float(alpha), "beta": float(beta), "beam_width": int(beam)}
            tone, _ = _tone_and_langs(rest)
            if tone < 1.0:
                chosen[lang]["tone_weight"] = tone
            print(f"{lang}: {setting} ({rate:.1f})")
        path = Path(folders.pop()) / DECODING_SETTINGS
        path.write_text(json.dumps(chosen, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
