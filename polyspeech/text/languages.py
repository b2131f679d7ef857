"""Language codes: ISO 639-3 everywhere, as MMS names its adapters; ISO 639-1 and -2 accepted."""

from __future__ import annotations

import functools

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
