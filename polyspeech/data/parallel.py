"""Parallel Chinese/English sentences for speech translation, written for this project.

``polyspeech/data/texts/cmn-eng.txt`` holds hand-written everyday pairs (``[pairs]``) and a
grammar: templates (``[templates]``) whose slots (``{name}``) are filled with aligned phrase
pairs (``[slot name]``), so every combination has its translation. One pair or filler a line,
Chinese, a tab, English.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

import numpy as np

from polyspeech.data.texts import read_sections
from polyspeech.errors import InputError

_SLOT = re.compile(r"\{(\w+)\}")
Pair = tuple[str, str]  # (cmn, eng)


@dataclass(frozen=True)
class ParallelTexts:
    pairs: tuple[Pair, ...]
    templates: tuple[Pair, ...]
    slots: dict[str, tuple[Pair, ...]]


@functools.cache
def load_parallel_texts() -> ParallelTexts:
    """Parse ``texts/cmn-eng.txt``; an :class:`InputError` names a malformed line."""
    resource = resources.files("polyspeech.data") / "texts" / "cmn-eng.txt"
    pairs: list[Pair] = []
    templates: list[Pair] = []
    slots: dict[str, list[Pair]] = {}
    for number, section, line in read_sections(resource, ("pairs", "templates")):
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) != 2 or not all(fields):
            raise InputError(f"{resource}:{number}: expected Chinese, a tab, English")
        pair = (fields[0], fields[1])
        if section == "pairs":
            pairs.append(pair)
        elif section == "templates":
            if sorted(_SLOT.findall(pair[0])) != sorted(_SLOT.findall(pair[1])):
                raise InputError(f"{resource}:{number}: the two sides name different slots")
            templates.append(pair)
        else:
            slots.setdefault(section[5:].strip(), []).append(pair)
    for template in templates:
        for slot in _SLOT.findall(template[0]):
            if not slots.get(slot):
                raise InputError(f"{resource}: template uses undefined slot {{{slot}}}")
    return ParallelTexts(
        tuple(dict.fromkeys(pairs)),
        tuple(templates),
        {name: tuple(values) for name, values in slots.items()},
    )


def pair_stream(rng: np.random.Generator, sentence_share: float) -> Iterator[tuple[Pair, str]]:
    """Endless ``((cmn, eng), source)``: a hand-written pair (source ``sentence``, drawn with
    replacement) with probability ``sentence_share``, else a filled template (``template``)."""
    texts = load_parallel_texts()
    while True:
        if rng.random() < sentence_share:
            yield texts.pairs[int(rng.integers(len(texts.pairs)))], "sentence"
            continue
        cmn, eng = texts.templates[int(rng.integers(len(texts.templates)))]
        chosen = {}
        for slot in _SLOT.findall(cmn):
            values = texts.slots[slot]
            chosen[slot] = values[int(rng.integers(len(values)))]
        english = _fill(eng, chosen, 1)
        yield (_fill(cmn, chosen, 0), english[:1].upper() + english[1:]), "template"


def _fill(template: str, chosen: dict[str, Pair], side: int) -> str:
    return _SLOT.sub(lambda match: chosen[match.group(1)][side], template)
