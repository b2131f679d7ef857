"""Language codes: ISO 639-3 everywhere, as MMS names its adapters; ISO 639-1 and -2 accepted.

A model's own languages (its adapters, vocabularies, voices) are named as it publishes them:
MMS keeps some retired or individual codes (``tgl``, ``prs``, ``ara``) and names a few
languages with a script (``cmn-script_simplified``); :func:`model_language` finds one of
them from what a user types.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterable

import langcodes

from polyspeech.errors import InputError

# A two-letter code names a macrolanguage where speech models (MMS among them) use the code of
# its dominant individual language: "zh" means Mandarin, "sw" Swahili of Tanzania and Kenya.
_MACROLANGUAGE_DEFAULTS = {
    "zho": "cmn",
    "swa": "swh",
    "ara": "arb",
    "fas": "pes",
    "msa": "zsm",
}

# BCP-47 script subtags as MMS writes them in its keys (``srp-script_latin``)
_SCRIPTS = {
    "latn": "latin",
    "cyrl": "cyrillic",
    "arab": "arabic",
    "hans": "simplified",
    "hant": "traditional",
}
SCRIPT_KEY = "-script_"  # between an MMS key's language code and its script
# a model's key as MMS writes them: an ISO 639-3 code, with a script or without
_KEY = re.compile(r"[a-z]{3}(?:-script_[a-z]+)?")

# Languages whose writing puts no spaces between words: scored and aligned by character.
_WITHOUT_SPACES = {
    "cmn",
    "zho",
    "yue",
    "wuu",
    "hak",
    "nan",
    "jpn",
    "tha",
    "lao",
    "khm",
    "mya",
    "bod",
}


@functools.lru_cache(maxsize=512)
def to_iso639_3(code: str) -> str:
    """Return the ISO 639-3 code for ``code`` ("en" -> "eng", "zh" -> "cmn", "ger" -> "deu").

    Raises :class:`InputError` for a code that names no language.
    """
    cleaned = code.strip().lower().replace("_", "-")
    if not cleaned:
        raise InputError("empty language code")
    base = cleaned.split("-")[0]
    try:
        alpha3 = langcodes.Language.get(base).to_alpha3()
    except (LookupError, ValueError):
        raise InputError(f"unknown language code {code!r} (use ISO 639-3, e.g. eng, cmn)") from None
    if len(base) == 2:
        alpha3 = _MACROLANGUAGE_DEFAULTS.get(alpha3, alpha3)
    return alpha3


def is_written_without_spaces(lang: str) -> bool:
    """True for languages written without spaces between words (Chinese, Japanese, Thai, ...)."""
    return to_iso639_3(lang) in _WITHOUT_SPACES


def join_words(pieces: Iterable[str], lang: str | None) -> str:
    """``pieces`` of text (words, segments) joined as ``lang`` is written: without spaces for
    Chinese and the like, else with one."""
    joiner = "" if lang is not None and is_written_without_spaces(lang) else " "
    return joiner.join(piece for piece in pieces if piece)


def as_published(code: str) -> str:
    """A model's label for a language as a key: an ISO 639-3 code as written (MMS's own
    ``tgl``, ``prs`` and ``ara`` stay, as do its script keys such as
    ``cmn-script_simplified``); a two-letter or BCP-47 code as :func:`to_iso639_3` maps it."""
    return code if _KEY.fullmatch(code) else to_iso639_3(code)


def model_language(lang: str, available: Collection[str], where: str) -> str | None:
    """The language of ``available`` (a model's keys, as published) that ``lang`` names, or
    None where none fits. In order: the key itself; the key of ``lang``'s ISO 639-3 code
    (``zh`` -> ``cmn``; for a two-letter code its ISO 639-2 code too: ``ar`` -> ``ara`` where
    a model has no ``arb``); the only ``<code>-script_*`` key of that code (``cmn`` ->
    ``cmn-script_simplified``), the one of a script asked for (``sr-Latn``,
    ``srp-script_latin``). A code with several script keys and no script asked is an
    :class:`InputError` naming ``where`` and listing them."""
    if lang in available:
        return lang
    codes = _candidate_codes(lang)
    for code in codes:
        if code in available:
            return code
    script = _asked_script(lang)
    for code in codes:
        scripted = sorted(key for key in available if key.startswith(code + SCRIPT_KEY))
        if script is not None:
            scripted = [key for key in scripted if key == f"{code}{SCRIPT_KEY}{script}"]
        if len(scripted) == 1:
            return scripted[0]
        if scripted:
            raise InputError(
                f"{where}: {lang} is written in several scripts here; choose one of "
                f"{', '.join(scripted)}"
            )
    return None


def _candidate_codes(lang: str) -> list[str]:
    """ISO 639-3 codes ``lang`` may stand for, the likeliest first; none for a code that names
    no language."""
    try:
        codes = [to_iso639_3(lang)]
    except InputError:
        return []
    base = lang.strip().lower().replace("_", "-").split("-")[0]
    if len(base) == 2:  # ISO 639-2's own code, before CLDR's choice of a member language
        codes.append(langcodes.Language.get(base, normalize=False).to_alpha3())
    return list(dict.fromkeys(codes))


def _asked_script(lang: str) -> str | None:
    """The script ``lang`` names, in MMS's words: ``sr-Latn`` and ``srp-script_latin`` ->
    ``latin``; None where it names none."""
    parts = lang.strip().lower().replace("_", "-").split("-")
    if len(parts) > 2 and parts[1] == "script":
        return parts[2]
    if len(parts) > 1 and len(parts[1]) == 4 and parts[1].isalpha():
        return _SCRIPTS.get(parts[1], parts[1])
    return None
