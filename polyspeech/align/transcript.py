"""The text side of forced alignment: a transcript's words as tokens of a CTC vocabulary.

Each line of the transcript is an utterance; each whitespace-separated word is a unit (in
languages written without spaces, each character is). A word is normalised; if every character
is in the vocabulary it is used as it is (a Chinese model aligns Chinese characters), otherwise
it is romanised with uroman and what is left outside the vocabulary is reported, never dropped
in silence. Every word keeps its text as written, so the output is in the transcript's own
script; for character spans each written character keeps the tokens it became.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from polyspeech.data.manifest import read_manifests, write_manifest
from polyspeech.errors import InputError
from polyspeech.files import read_text
from polyspeech.text.languages import is_written_without_spaces
from polyspeech.text.normalize import UNSPACED_SCRIPT, normalize_text
from polyspeech.text.romanize import romanize
from polyspeech.text.vocab import WORD_DELIMITER, Vocabulary

_UNSPACED = re.compile(f"[{UNSPACED_SCRIPT}]")


@dataclass(frozen=True)
class TranscriptWord:
    """One unit of the transcript: its text as written and its tokens in the vocabulary.

    ``char_ends[i]`` is how many of the word's tokens written character ``i`` and those before it
    account for (so character ``i`` has tokens ``char_ends[i-1]:char_ends[i]``).
    """

    line: int
    text: str
    tokens: tuple[int, ...]
    char_ends: tuple[int, ...]


@dataclass(frozen=True)
class Transcript:
    lines: tuple[str, ...]
    words: tuple[TranscriptWord, ...]
    unmapped: Counter[str]  # characters that became no token, with their counts
    delimiter: int | None  # the word-separator token put between words, if any


def read_transcript(path: str | os.PathLike) -> list[str]:
    """The non-empty lines of a UTF-8 transcript file, one utterance each."""
    text = read_text(path, "transcript")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputError(f"{path}: transcript is empty")
    return lines


def _units(line: str) -> list[str]:
    """Whitespace-separated words; characters of unspaced scripts are units of their own
    (punctuation after such a character stays with it)."""
    units: list[str] = []
    for chunk in line.split():
        if not _UNSPACED.search(chunk):
            units.append(chunk)
            continue
        for char in chunk:
            joins = units and not _UNSPACED.match(char) and not char.isalnum()
            if joins and units[-1] and _UNSPACED.match(units[-1][-1]):
                units[-1] += char
            else:
                units.append(char)
    return units


class _Mapper:
    """Normalised text -> token ids of one vocabulary (upper case if the vocabulary is)."""

    def __init__(self, vocabulary: Vocabulary, lang: str | None) -> None:
        self.index = vocabulary.mapping()
        self.lang = lang
        self._romanized: dict[str, str] = {}
        characters = vocabulary.characters
        self.upper = any(c.isupper() for c in characters) and not any(
            c.islower() for c in characters
        )

    def normalize(self, text: str) -> str:
        text = normalize_text(text, self.lang).replace(" ", "")
        return text.upper() if self.upper else text

    def covers(self, text: str) -> bool:
        return all(char in self.index for char in text)

    def romanized(self, text: str) -> str:
        if text not in self._romanized:  # words repeat; uroman takes milliseconds a call
            plain = unicodedata.normalize("NFKD", romanize(text, self.lang))
            plain = "".join(c for c in plain if not unicodedata.combining(c))
            self._romanized[text] = self.normalize(plain)
        return self._romanized[text]

    def tokens(self, text: str) -> list[int]:
        return [self.index[char] for char in text if char in self.index]


def _spell(written: str, convert: Callable[[str], str]) -> list[str]:
    """``convert(written)`` cut into one piece per written character: what the character's
    prefix of the word adds (converting whole words keeps rules that look at neighbours)."""
    full = convert(written)
    pieces, done = [], 0
    for end in range(1, len(written) + 1):
        reach = len(full)
        if end < len(written):
            prefix, common = convert(written[:end]), 0
            while common < min(len(prefix), len(full)) and prefix[common] == full[common]:
                common += 1
            reach = max(done, common)
        pieces.append(full[done:reach])
        done = reach
    return pieces


def _word(mapper: _Mapper, line: int, written: str, unmapped: Counter[str]) -> TranscriptWord:
    covered = mapper.covers(mapper.normalize(written))
    pieces = _spell(written, mapper.normalize if covered else mapper.romanized)
    tokens: list[int] = []
    ends: list[int] = []
    for char, piece in zip(written, pieces, strict=True):
        if any(c not in mapper.index for c in piece):
            unmapped[char] += 1
        tokens.extend(mapper.tokens(piece))
        ends.append(len(tokens))
    return TranscriptWord(line, written, tuple(tokens), tuple(ends))


def prepare_transcript(lines: list[str], vocabulary: Vocabulary, lang: str | None) -> Transcript:
    """Tokens for every word of ``lines``; see the module's description."""
    mapper = _Mapper(vocabulary, lang)
    unmapped: Counter[str] = Counter()
    words = tuple(
        _word(mapper, number, unit, unmapped)
        for number, line in enumerate(lines)
        for unit in _units(line)
    )
    unspaced = lang is not None and is_written_without_spaces(lang)
    romanised = any(not mapper.covers(mapper.normalize(word.text)) for word in words)
    delimiter = mapper.index.get(WORD_DELIMITER)
    if unspaced and not romanised:
        delimiter = None  # a model of an unspaced language writes no separator between words
    return Transcript(tuple(lines), words, unmapped, delimiter)


ROMAN = Vocabulary.from_texts(["abcdefghijklmnopqrstuvwxyz'"])  # MMS's alignment characters
UNIVERSAL = "und"  # the language key of a model over ROMAN for every language


def romanized_line(line: str, lang: str | None) -> str:
    """``line`` as the universal alignment model reads it: each word (each character, in
    unspaced scripts) romanised as :func:`prepare_transcript` does, a-z and ', one space apart.
    Training text for that model is made with this, so it learns what alignment asks of it."""
    transcript = prepare_transcript([line], ROMAN, lang)
    spelled = ("".join(ROMAN.tokens[t] for t in word.tokens) for word in transcript.words)
    return " ".join(word for word in spelled if word)


def romanize_manifests(
    manifests: Sequence[str | os.PathLike], out: str | os.PathLike, per_lang: int | None = None
) -> tuple[int, int]:
    """Write the lines of ``manifests`` (at most the first ``per_lang`` of each language) with
    their texts as the universal alignment model reads them (:func:`romanized_line`), language
    ``und``, the source's language in ``extra``; a line left without letters is skipped.
    Returns (lines written, lines skipped)."""
    skipped, taken = 0, Counter()

    def romanised():
        nonlocal skipped
        for entry in read_manifests(manifests):
            if per_lang is not None and taken[entry.lang] >= per_lang:
                continue
            taken[entry.lang] += 1
            text = romanized_line(entry.text, entry.lang)
            if not text:
                skipped += 1
                continue
            extra = {**entry.extra, "source_lang": entry.lang}
            yield replace(entry, text=text, lang=UNIVERSAL, extra=extra)

    return write_manifest(out, romanised()), skipped
