"""Text normalisation for scoring and alignment, per language.

NFKC, case folding (Turkish dotted/dotless i kept apart), punctuation and symbols removed by
Unicode category, whitespace collapsed. Apostrophes inside words stay ("don't", "l'homme"), so
elisions are not split into two words. For languages written without spaces (Chinese, Japanese,
Thai, ...) spaces next to characters of those scripts are dropped, so texts compare by character.
"""

from __future__ import annotations

import re
import unicodedata

from polyspeech.text.languages import is_written_without_spaces, to_iso639_3

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u02bc": "'", "\u2018": "'"})
_WORD_APOSTROPHE = re.compile(r"(?<=\w)'(?=\w)")
UNSPACED_SCRIPT = (  # character ranges of scripts written without spaces
    "\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
)
_SPACE_NEXT_TO_UNSPACED = re.compile(rf"(?<=[{UNSPACED_SCRIPT}])\s+|\s+(?=[{UNSPACED_SCRIPT}])")
_DOTTED_I_LANGS = {"tur", "aze", "tat", "kaz", "gag", "crh"}


def _casefold(text: str, lang: str | None) -> str:
    if lang in _DOTTED_I_LANGS:
        text = text.replace("I", "\u0131").replace("\u0130", "i")
    return text.casefold()


def normalize_text(
    text: str, lang: str | None = None, fold_case: bool = True, drop_punctuation: bool = True
) -> str:
    """Return ``text`` normalised for comparison; ``lang`` (any ISO 639 code) selects the rules.
    ``fold_case`` and ``drop_punctuation`` (both the default) can be turned off for scoring."""
    code = to_iso639_3(lang) if lang else None
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
    if fold_case:
        text = _casefold(text, code)
    text = _WORD_APOSTROPHE.sub("\0", text)  # protect apostrophes inside words
    removed = "PSZC" if drop_punctuation else "ZC"
    text = "".join(
        " " if unicodedata.category(char)[0] in removed and char != "\0" else char for char in text
    )
    text = " ".join(text.replace("\0", "'").split())
    if code and is_written_without_spaces(code):
        text = _SPACE_NEXT_TO_UNSPACED.sub("", text)
    return text


def describe_normalization(fold_case: bool = True, drop_punctuation: bool = True) -> str:
    """The normalisation :func:`normalize_text` applies with these options, in words."""
    steps = ["NFKC"]
    steps.append("case folding" if fold_case else "case kept")
    steps.append("punctuation and symbols removed" if drop_punctuation else "punctuation kept")
    steps.append("spaces collapsed (none between Chinese characters)")
    return ", ".join(steps)
