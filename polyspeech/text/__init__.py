"""Text: language codes, normalisation for scoring and alignment, romanisation."""

from polyspeech.text.languages import is_written_without_spaces, to_iso639_3
from polyspeech.text.normalize import normalize_text
from polyspeech.text.romanize import romanize

__all__ = ["is_written_without_spaces", "normalize_text", "romanize", "to_iso639_3"]
