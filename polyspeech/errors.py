"""The errors polyspeech raises on purpose: each carries a message a user can act on."""


class PolyspeechError(Exception):
    """Base class of every error polyspeech raises deliberately."""


class InputError(PolyspeechError):
    """The input (a file, a text, an option) is unusable; the message names it and says why."""


class DependencyError(PolyspeechError):
    """Something polyspeech needs from the system (espeak-ng, a voice) is missing."""
