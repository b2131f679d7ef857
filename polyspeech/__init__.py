"""polyspeech: multilingual speech recognition, translation, alignment, language ID, synthesis."""

from polyspeech.audio import load_audio
from polyspeech.errors import DependencyError, InputError, PolyspeechError

__version__ = "0.1.0"

__all__ = ["DependencyError", "InputError", "PolyspeechError", "__version__", "load_audio"]
