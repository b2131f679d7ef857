"""The errors polyspeech raises on purpose: each carries a message a user can act on."""

import importlib
from types import ModuleType


class PolyspeechError(Exception):
    """Base class of every error polyspeech raises deliberately."""


class InputError(PolyspeechError):
    """The input (a file, a text, an option) is unusable; the message names it and says why."""


class AudioTooLong(InputError):
    """Audio over a length limit (a server's, or the caller's ``max_duration``)."""


class DependencyError(PolyspeechError):
    """Something polyspeech needs from the system (espeak-ng, a voice) is missing."""


def optional_module(name: str, purpose: str, extra: str) -> ModuleType:
    """The module ``name`` of an optional extra, or a :class:`DependencyError` saying that
    ``purpose`` needs it and which extra installs it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise DependencyError(
            f"{purpose} needs {name}: pip install 'polyspeech[{extra}]'"
        ) from None
