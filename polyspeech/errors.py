"""The errors polyspeech raises on purpose: each carries a message a user can act on."""


class PolyspeechError(Exception):
    """Base class of every error polyspeech raises deliberately."""


class InputError(PolyspeechError):
    """The input (a file, a text, an option) is unusable; the message names it and says why."""


class AudioTooLong(InputError):
    """Audio over a length limit (a server's, or the caller's ``max_duration``)."""


class DependencyError(PolyspeechError):
    """Something polyspeech needs from the system (espeak-ng, a voice) is missing."""
