"""Character vocabularies for CTC models, in the layout MMS publishes.

A vocabulary maps characters to ids; id 0 is ``<pad>``, the CTC blank, and ``|`` stands for the
space between words. A multilingual model keeps one vocabulary per language in a nested
``vocab.json`` (``{lang: {char: id}}``); a single-language model keeps a flat one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from polyspeech.errors import InputError

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
WORD_DELIMITER = "|"
_SPECIALS = (PAD, BOS, EOS, UNK)


@dataclass(frozen=True)
class Vocabulary:
    """Tokens by id; ``tokens[0]`` is the blank."""

    tokens: tuple[str, ...]

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Vocabulary:
        """Every character of the (normalised) texts, in sorted order, after the specials."""
        characters = {char for text in texts for char in text if char != " "}
        return cls((*_SPECIALS, WORD_DELIMITER, *sorted(characters - {WORD_DELIMITER})))

    @classmethod
    def from_mapping(cls, mapping: dict[str, int]) -> Vocabulary:
        ids = sorted(mapping.values())
        if ids != list(range(len(ids))):
            raise InputError("vocabulary ids must run from 0 without gaps")
        return cls(tuple(sorted(mapping, key=mapping.__getitem__)))

    def extended(self, texts: Iterable[str]) -> Vocabulary:
        """This vocabulary (ids kept) and, after it, the texts' characters it lacks, sorted."""
        new = Vocabulary.from_texts(texts).characters
        return Vocabulary((*self.tokens, *sorted(set(new) - set(self.tokens))))

    @property
    def characters(self) -> tuple[str, ...]:
        """The tokens that are characters of the language (no specials, no delimiter)."""
        return tuple(t for t in self.tokens if t not in _SPECIALS and t != WORD_DELIMITER)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def blank(self) -> int:
        return 0

    def mapping(self) -> dict[str, int]:
        return {token: index for index, token in enumerate(self.tokens)}

    def encode(self, text: str) -> list[int]:
        """Ids of a normalised text; spaces become ``|``, unknown characters ``<unk>``."""
        index = self.mapping()
        unknown = index.get(UNK, 0)
        return [index.get(WORD_DELIMITER if char == " " else char, unknown) for char in text]

    def token_text(self, token_id: int) -> str:
        """What a token writes: a space for ``|``, nothing for the specials."""
        token = self.tokens[token_id]
        if token == WORD_DELIMITER:
            return " "
        return "" if token in _SPECIALS else token


def load_vocabularies(path: str | os.PathLike) -> dict[str | None, Vocabulary]:
    """Read ``vocab.json``: nested gives ``{lang: Vocabulary}``, flat ``{None: Vocabulary}``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: cannot read vocabulary ({error})") from None
    if data and all(isinstance(value, dict) for value in data.values()):
        return {lang: Vocabulary.from_mapping(mapping) for lang, mapping in data.items()}
    return {None: Vocabulary.from_mapping(data)}


def save_vocabularies(path: str | os.PathLike, vocabularies: dict[str, Vocabulary]) -> None:
    """Write the nested ``vocab.json`` of a multilingual model."""
    nested = {lang: vocabularies[lang].mapping() for lang in sorted(vocabularies)}
    Path(path).write_text(json.dumps(nested, ensure_ascii=False, indent=1), encoding="utf-8")
