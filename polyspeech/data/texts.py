"""Sentences for the synthetic corpus, in each language's own script.

Three sources per language: sentences written by hand for this project, templates with slots
(fillers written by hand, person names from Faker, numbers spelled out by num2words), and strings
of frequent words from wordfreq (broad vocabulary, no grammar). The hand-written material lives in
``polyspeech/data/texts/<lang>.txt``: ``[sentences]``, ``[templates]`` and ``[slot NAME]``
sections, one item per line.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

import numpy as np

from polyspeech.errors import InputError, optional_module


@dataclass(frozen=True)
class _TextSources:
    faker_locale: str
    num2words_lang: str | None  # None: spelled out here (no num2words support)
    wordfreq_lang: str | None  # None: wordfreq has no list for the language
    script: str  # Unicode name prefix of the letters the language is written in


_SOURCES = {
    "eng": _TextSources("en_US", "en", "en", "LATIN"),
    "deu": _TextSources("de_DE", "de", "de", "LATIN"),
    "fra": _TextSources("fr_FR", "fr", "fr", "LATIN"),
    "spa": _TextSources("es_ES", "es", "es", "LATIN"),
    "ita": _TextSources("it_IT", "it", "it", "LATIN"),
    "por": _TextSources("pt_PT", "pt", "pt", "LATIN"),
    "nld": _TextSources("nl_NL", "nl", "nl", "LATIN"),
    "swh": _TextSources("sw", None, None, "LATIN"),
    "ind": _TextSources("id_ID", "id", "id", "LATIN"),
    "tur": _TextSources("tr_TR", "tr", "tr", "LATIN"),
    "rus": _TextSources("ru_RU", "ru", "ru", "CYRILLIC"),
    "cmn": _TextSources("zh_CN", None, "zh", "CJK UNIFIED"),
    "fin": _TextSources("fi_FI", "fi", "fi", "LATIN"),
    "hun": _TextSources("hu_HU", "hu", "hu", "LATIN"),
}

# Weights of the three sources while hand-written sentences last.
_SOURCE_WEIGHTS = {"sentence": 0.3, "template": 0.5, "words": 0.2}
_SLOT = re.compile(r"\{(\w+)\}")


def text_languages() -> list[str]:
    """Languages the corpus builder has text for (ISO 639-3)."""
    return sorted(_SOURCES)


@dataclass(frozen=True)
class LanguageTexts:
    """The hand-written material of one language."""

    sentences: tuple[str, ...]
    templates: tuple[str, ...]
    slots: dict[str, tuple[str, ...]]


def read_sections(resource, names: tuple[str, ...]) -> Iterator[tuple[int, str, str]]:
    """``(line number, section, line)`` for each item of a hand-written text file: sections
    ``[name]`` of ``names`` or ``[slot NAME]``, one item a line, ``#`` comments and blank lines
    skipped. An unknown section or text before the first is an error naming the line."""
    section = None
    for number, raw in enumerate(resource.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            if not section.startswith("slot ") and section not in names:
                raise InputError(f"{resource}:{number}: unknown section [{section}]")
        elif section is None:
            raise InputError(f"{resource}:{number}: text before the first section")
        else:
            yield number, section, line


@functools.cache
def load_texts(lang: str) -> LanguageTexts:
    """Parse ``texts/<lang>.txt``; an :class:`InputError` names a malformed line."""
    if lang not in _SOURCES:
        raise InputError(
            f"no synthetic text for language {lang!r}; available: {', '.join(text_languages())}"
        )
    resource = resources.files("polyspeech.data") / "texts" / f"{lang}.txt"
    sentences: list[str] = []
    templates: list[str] = []
    slots: dict[str, list[str]] = {}
    for _, section, line in read_sections(resource, ("sentences", "templates")):
        if section == "sentences":
            sentences.append(line)
        elif section == "templates":
            templates.append(line)
        else:
            slots.setdefault(section[5:].strip(), []).append(line)
    builtin = {"first_name", "last_name", "number"}
    for template in templates:
        for slot in _SLOT.findall(template):
            if slot not in builtin and not slots.get(slot):
                raise InputError(f"{resource}: template uses undefined slot {{{slot}}}")
    return LanguageTexts(
        tuple(dict.fromkeys(sentences)),
        tuple(templates),
        {name: tuple(values) for name, values in slots.items()},
    )


_CHINESE_DIGITS = "零一二三四五六七八九"


def _chinese_number(n: int) -> str:
    """Mandarin cardinal for 0 <= n < 1000, as it is read (一百零五, 三百四十二, 十二)."""
    hundreds, tens, units = n // 100, n // 10 % 10, n % 10
    parts = []
    if hundreds:
        parts.append(_CHINESE_DIGITS[hundreds] + "百")
        if tens == 0 and units:
            parts.append("零")
    if tens:
        parts.append(("" if tens == 1 and not hundreds else _CHINESE_DIGITS[tens]) + "十")
    if units or not parts:
        parts.append(_CHINESE_DIGITS[units])
    return "".join(parts)


_SWAHILI_UNITS = ["", "moja", "mbili", "tatu", "nne", "tano", "sita", "saba", "nane", "tisa"]
_SWAHILI_TENS = [
    "",
    "kumi",
    "ishirini",
    "thelathini",
    "arobaini",
    "hamsini",
    "sitini",
    "sabini",
    "themanini",
    "tisini",
]


def _swahili_number(n: int) -> str:
    """Swahili cardinal for 1 <= n < 1000 (mia tatu arobaini na mbili)."""
    hundreds, tens, units = n // 100, n // 10 % 10, n % 10
    below_hundred = ""
    if tens and units:
        below_hundred = f"{_SWAHILI_TENS[tens]} na {_SWAHILI_UNITS[units]}"
    elif tens or units:
        below_hundred = _SWAHILI_TENS[tens] or _SWAHILI_UNITS[units]
    if not hundreds:
        return below_hundred
    head = f"mia {_SWAHILI_UNITS[hundreds]}"
    if not below_hundred:
        return head
    return f"{head} {below_hundred}" if tens else f"{head} na {below_hundred}"


def number_words(n: int, lang: str) -> str:
    """``n`` (2-999) spelled out in ``lang``."""
    sources = _SOURCES[lang]
    if lang == "cmn":
        return _chinese_number(n)
    if lang == "swh":
        return _swahili_number(n)
    spell = optional_module("num2words", "corpus synthesis", "synth").num2words
    words = spell(n, lang=sources.num2words_lang)
    if lang == "hun" and words.endswith("két"):
        words = words[: -len("két")] + "kettő"  # num2words gives the attributive form for 102
    return words


@functools.cache
def frequent_words(lang: str) -> tuple[str, ...]:
    """wordfreq's 20,000 most frequent words of ``lang`` written wholly in its script."""
    sources = _SOURCES.get(lang)
    if sources is None or sources.wordfreq_lang is None:
        return ()
    wordfreq = optional_module("wordfreq", "corpus synthesis", "synth")
    minimum = 1 if sources.script == "CJK UNIFIED" else 2
    return tuple(
        word
        for word in wordfreq.top_n_list(sources.wordfreq_lang, 20000)
        if len(word) >= minimum
        and all(unicodedata.name(char, "").startswith(sources.script) for char in word)
    )


def sentence_stream(lang: str, rng: np.random.Generator) -> Iterator[tuple[str, str]]:
    """Endless ``(text, source)`` pairs for ``lang``; source is sentence, template or words.

    Hand-written sentences come each once, in an order drawn from ``rng``; the other two
    sources repeat only by chance. The stream is fully determined by ``rng``.
    """
    texts = load_texts(lang)
    sources = _SOURCES[lang]
    fake = optional_module("faker", "corpus synthesis", "synth").Faker(sources.faker_locale)
    fake.seed_instance(int(rng.integers(2**31)))
    words = frequent_words(lang)
    joiner = "" if sources.script == "CJK UNIFIED" else " "
    order = list(rng.permutation(len(texts.sentences)))
    weights = dict(_SOURCE_WEIGHTS)
    if not texts.templates:
        weights["template"] = 0.0
    if not words:
        weights["words"] = 0.0

    def fill(match: re.Match) -> str:
        slot = match.group(1)
        if slot == "first_name":
            return fake.first_name()
        if slot == "last_name":
            return fake.last_name()
        if slot == "number":
            return number_words(int(rng.integers(2, 1000)), lang)
        values = texts.slots[slot]
        return values[int(rng.integers(len(values)))]

    while True:
        if not order:
            weights["sentence"] = 0.0
        names = [name for name, weight in weights.items() if weight > 0]
        if not names:
            return
        probabilities = np.array([weights[name] for name in names])
        source = names[int(rng.choice(len(names), p=probabilities / probabilities.sum()))]
        if source == "sentence":
            yield texts.sentences[order.pop()], source
        elif source == "template":
            template = texts.templates[int(rng.integers(len(texts.templates)))]
            yield _SLOT.sub(fill, template), source
        else:
            count = int(rng.integers(4, 10))
            yield joiner.join(words[int(i)] for i in rng.integers(len(words), size=count)), source
