"""One CTC training step of the default model's shape, two ways of scoring a mixed batch side by
side: each language's rows over its own output rows (``_CtcLoss``, what training does), against
the baseline it replaced, every row over all characters of the tied layer with the other
languages' columns masked out (-1e4) before one softmax. Both give the same loss.

Twelve languages with the default model's vocabulary sizes (Chinese 1,921 characters), 24 rows
of 2.5 s (60 s of audio), random features and targets, AdamW; two threads (``--smoke``: a tiny
model and the caller's thread count).

    python bench/ctc_train_step.py        # 5 steps each way after a warm-up, twice, best kept
    python bench/ctc_train_step.py --smoke   # a tiny model, 12 rows of 1 s, one step each way

Prints the table and writes JSON (``--out``, default bench/results/ctc_train_step.json), with
each way's ``baseline_over_this`` (the baseline's time a step over its own).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from polyspeech.ctc.conformer import ConformerConfig, ConformerCTC
from polyspeech.ctc.train import _CtcLoss
from polyspeech.files import atomic_text_file

OTHERS = "deu eng fra ind ita nld por rus spa swh tur".split()
SIZES = {"cmn": 1921, **dict.fromkeys(OTHERS, 40)}
# the smoke run's model: the same code path at a tiny size
SMOKE_CONFIG = ConformerConfig(
    conv_channels=4, hidden_size=16, num_heads=2, feed_forward_size=32, num_layers=2, adapter_size=4
)


def masked_loss(model: ConformerCTC, features, lengths, langs, targets) -> torch.Tensor:
    """The baseline: one softmax over all characters, other languages' columns masked."""
    states, out_lengths = model.states(features, lengths, langs)
    own = torch.zeros(len(langs), model.shared_head.out_features, dtype=torch.bool)
    for row, lang in enumerate(langs):
        own[row, model._head_rows[lang]] = True
    log_probs = model.shared_head(states).masked_fill(~own[:, None, :], -1e4).log_softmax(-1)
    union = [model._head_rows[lang][targets[row]] for row, lang in enumerate(langs)]
    return torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1),
        torch.cat(union),
        out_lengths,
        torch.tensor([len(t) for t in targets]),
        zero_infinity=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/ctc_train_step.json"))
    parser.add_argument("--smoke", action="store_true", help="a tiny model, 12 rows of 1 s, once")
    args = parser.parse_args()
    steps, rounds = (1, 1) if args.smoke else (args.steps, 2)
    if not args.smoke:  # a smoke run keeps the caller's thread count
        torch.set_num_threads(2)
    torch.manual_seed(0)
    model = ConformerCTC(SMOKE_CONFIG if args.smoke else ConformerConfig())
    rows, start = {}, 0
    for lang, size in SIZES.items():
        model.add_language(lang, size)
        # the blank and the word separator shared, every other character a row of its own
        rows[lang] = [0, 1, *range(start + 2, start + size)]
        start += size - 2
    model.tie_heads(rows, start + 2)
    # rows of 2.5 s (250 fbank frames) with 20 characters; the smoke run: 1 s, 8 characters
    copies, frames, characters = (1, 100, 8) if args.smoke else (2, 250, 20)
    langs = list(SIZES) * copies
    features, lengths = torch.randn(len(langs), frames, 80), torch.full((len(langs),), frames)
    targets = [torch.randint(1, SIZES[lang], (characters,)) for lang in langs]
    optimizer = torch.optim.AdamW(model.parameters())
    per_language = _CtcLoss(model)
    ways = {
        "per language (training)": lambda: per_language(features, lengths, langs, targets, True)[0],
        "all characters, masked (baseline)": lambda: masked_loss(
            model, features, lengths, langs, targets
        ),
    }
    model.eval()  # no dropout: the two losses must agree
    with torch.no_grad():
        losses = {name: float(way()) for name, way in ways.items()}
    model.train()
    best = {name: float("inf") for name in ways}
    for _ in range(rounds):
        for name, way in ways.items():
            for _ in range(steps + 1):  # the first is a warm-up
                started = time.perf_counter()
                loss = way()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                best[name] = min(best[name], time.perf_counter() - started)
    baseline = best["all characters, masked (baseline)"]
    ratios = {name: baseline / best[name] for name in ways}
    print("| scoring | loss at the start | s a step | baseline / this |")
    print("|---|---:|---:|---:|")
    for name in ways:
        print(f"| {name} | {losses[name]:.4f} | {best[name]:.3f} | {ratios[name]:.2f}x |")
    report = {"smoke": args.smoke, "steps": steps, "losses": losses, "seconds_per_step": best,
              "baseline_over_this": ratios}  # fmt: skip
    with atomic_text_file(args.out) as stream:
        stream.write(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
