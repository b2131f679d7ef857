"""Romanisation of any script with uroman (used by alignment and text-to-speech)."""

from __future__ import annotations

import functools

import uroman

from polyspeech.text.languages import to_iso639_3

# uroman writes Chinese numerals as digits ("六" -> "6"): neither letters nor what is said
_MANDARIN_NUMERALS = str.maketrans(
    {
        "零": "ling", "一": "yi", "二": "er", "三": "san", "四": "si", "五": "wu", "六": "liu",
        "七": "qi", "八": "ba", "九": "jiu", "十": "shi", "百": "bai", "千": "qian", "亿": "yi",
    }
)  # fmt: skip


@functools.lru_cache(maxsize=1)
def _romanizer() -> uroman.Uroman:
    return uroman.Uroman()  # loads its tables once per process (a few seconds)


def romanize(text: str, lang: str | None = None) -> str:
    """Return ``text`` in Latin letters; ``lang`` lets uroman apply language-specific rules.
    Chinese numerals in Mandarin are read as spoken (pinyin without tones), not as digits."""
    code = to_iso639_3(lang) if lang else None
    if code == "cmn":
        text = text.translate(_MANDARIN_NUMERALS)
    return str(_romanizer().romanize_string(text, lcode=code))
