"""What a model mishears in Chinese, per source of the corpus's texts (sentence, template,
words): the CER, and the error rate over the characters' readings (espeak-ng's reading of
each character alone, so that a homophone counts as right) with and without the tone.

    python recipes/default_ctc/tone_errors.py MODEL DEV.jsonl CACHE.pkl [--per-lang N] [--lm LM]

The gap between the CER and the reading error rate is the homophones; the gap between the
reading error rates with and without tone is the syllables heard right but in the wrong tone.
The readings are in espeak-ng's mnemonics, which write each tone's contour (55, 35, 214, 51,
11); its IPA writes tones 1 and 4 alike (55 and 51 both as "5").
``CACHE`` is tune_lm.py's cache of log-probabilities (the same file serves both).
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch
from tune_lm import log_probs_of

from polyspeech import load
from polyspeech.ctc.decode import make_decoder
from polyspeech.eval.metrics import cer, wer
from polyspeech.text.normalize import normalize_text
from polyspeech.tts.espeak import VOICES, get_espeak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("manifest")
    parser.add_argument("cache", type=Path)
    parser.add_argument("--per-lang", type=int)
    parser.add_argument(
        "--lm", help="a folder of <lang>.arpa.gz: beam search with its settings for cmn"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load(args.model)
    rows = log_probs_of(model, args.manifest, args.per_lang, args.cache)
    counts: dict[str, int] = defaultdict(int)
    sources = []  # the source of each row, in the order log_probs_of keeps them
    for line in Path(args.manifest).read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        counts[entry["lang"]] += 1
        if args.per_lang is None or counts[entry["lang"]] <= args.per_lang:
            sources.append(entry.get("source", "unknown"))
    vocabulary = model.vocabulary("cmn")
    decoder = make_decoder(vocabulary, True, args.lm, "cmn")
    readings: dict[tuple[str, bool], str] = {}

    def read(text: str, tone: bool) -> str:
        """The characters' readings as space-separated tokens."""
        tokens = []
        for character in text.replace(" ", ""):
            if (character, tone) not in readings:
                spoken = get_espeak().reading(character, VOICES["cmn"], tone)
                readings[character, tone] = spoken or character
            tokens.append(readings[character, tone])
        return " ".join(tokens)

    pairs = defaultdict(list)
    for (lang, text, log_probs), source in zip(rows, sources, strict=True):
        if lang == "cmn":
            hypothesis = "".join(word.text for word in decoder.words(log_probs))
            pair = (normalize_text(text, lang), normalize_text(hypothesis, lang))
            pairs[source].append(pair)
            pairs["all"].append(pair)
    print("source    clips  CER  readings  readings without tone (%)")
    for source, found in sorted(pairs.items()):
        refs, hyps = [r for r, _ in found], [h for _, h in found]
        rates = [
            cer(refs, hyps).rate,
            wer([read(r, True) for r in refs], [read(h, True) for h in hyps]).rate,
            wer([read(r, False) for r in refs], [read(h, False) for h in hyps]).rate,
        ]
        print(f"{source:9} {len(found):5} " + " ".join(f"{100 * rate:5.1f}" for rate in rates))


if __name__ == "__main__":
    main()
