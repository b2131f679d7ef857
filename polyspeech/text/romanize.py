"""Romanisation of any script with uroman (used by alignment and text-to-speech)."""

from __future__ import annotations

import functools

import uroman

from polyspeech.text.languages import to_iso639_3


@functools.lru_cache(maxsize=1)
def _romanizer() -> uroman.Uroman:
    return uroman.Uroman()  # loads its tables once per process (a few seconds)


def romanize(text: str, lang: str | None = None) -> str:
    """Return ``text`` in Latin letters; ``lang`` lets uroman apply language-specific rules."""
    code = to_iso639_3(lang) if lang else None
    return str(_romanizer().romanize_string(text, lcode=code))
