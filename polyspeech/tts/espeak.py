"""espeak-ng, called in-process through its C library (ctypes).

The library and its voice data come from the ``espeakng-loader`` wheel, or else from a system
install (``apt-get install espeak-ng``). espeak-ng keeps global state, so there is one
:class:`Espeak` per process (:func:`get_espeak`); processes synthesise in parallel. Its speech
also depends on what the process spoke before (the same sentence twice in a row differs by a
few samples, even after ``espeak_Terminate`` and a new ``espeak_Initialize``), so
:func:`synthesize_afresh` speaks in a process that has spoken nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from polyspeech.errors import DependencyError, InputError, PolyspeechError

_AUDIO_OUTPUT_SYNCHRONOUS = 2  # no background thread: espeak_Synth returns when done
_POS_CHARACTERS = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PHONEMES_MNEMONIC = 0x00
_PHONEMES_IPA = 0x02
_EE_OK = 0
_MNEMONIC_MARKS = re.compile(r"\([^)]*\)|[',_|-]")  # stress, pauses, links, language switches
_TONE_DIGITS = re.compile(r"[1-5]")  # a tone language's contours in mnemonics: 55, 35, 214

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


# espeak-ng's voice per language (the synthetic corpora's and polyspeech speak's);
# cmn-latn-pinyin reads Chinese characters with Mandarin phonology.
VOICES = {
    "eng": "en-us",
    "deu": "de",
    "fra": "fr",
    "spa": "es",
    "ita": "it",
    "por": "pt",
    "nld": "nl",
    "swh": "sw",
    "ind": "id",
    "tur": "tr",
    "rus": "ru",
    "cmn": "cmn-latn-pinyin",
    "fin": "fi",
    "hun": "hu",
}


def _locate() -> tuple[str, str | None]:
    """Path of libespeak-ng and of its data folder (None: the library's built-in default)."""
    try:
        import espeakng_loader
    except ImportError:
        library = ctypes.util.find_library("espeak-ng")
        if library is None:
            raise DependencyError(
                "espeak-ng is not installed: pip install espeakng-loader "
                "(or apt-get install espeak-ng)"
            ) from None
        return library, None
    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


class Espeak:
    """Text to waveform with espeak-ng. Not thread-safe; use one per process."""

    def __init__(self) -> None:
        library_path, data_path = _locate()
        try:
            self._lib = ctypes.CDLL(library_path)
        except OSError as error:
            raise DependencyError(f"cannot load espeak-ng from {library_path}: {error}") from None
        self._lib.espeak_Initialize.restype = ctypes.c_int
        path = data_path.encode() if data_path else None
        rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, path, 0)
        if rate <= 0:
            raise DependencyError(f"espeak-ng failed to start (data folder {data_path})")
        self.sample_rate: int = rate
        self._variants = Path(data_path) / "voices" / "!v" if data_path else None
        self._chunks: list[np.ndarray] = []
        self._callback = _SynthCallback(self._collect)  # kept alive as long as the library
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self._lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_int,
        ]

    def _collect(self, wave, count, _events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wave, shape=(count,)).copy())
        return 0

    def has_voice(self, voice: str) -> bool:
        """True when espeak-ng knows ``voice`` (``language[+variant]``, e.g. ``en-us+f2``)."""
        language, _, variant = voice.partition("+")
        if variant and self._variants is not None and not (self._variants / variant).is_file():
            return False
        return self._lib.espeak_SetVoiceByName(language.encode()) == _EE_OK

    def _use_voice(self, voice: str) -> None:
        if not self.has_voice(voice) or self._lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise DependencyError(f"espeak-ng has no voice {voice!r}")

    def synthesize(
        self, text: str, voice: str, rate: int = 175, pitch: int = 50, seed: int = 0
    ) -> np.ndarray:
        """Speak ``text``; returns float32 samples in [-1, 1] at :attr:`sample_rate`.

        ``rate`` is in words per minute (80-450), ``pitch`` 0-100. ``seed`` fixes espeak-ng's
        random variation (it seeds from the clock otherwise) where the library allows it.
        """
        self._use_voice(voice)
        self._lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
        self._lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
        if hasattr(self._lib, "espeak_ng_SetRandSeed"):
            self._lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        encoded = text.encode("utf-8") + b"\0"
        self._chunks = []
        status = self._lib.espeak_Synth(
            encoded, len(encoded), 0, _POS_CHARACTERS, 0, _CHARS_UTF8, None, None
        )
        if status != _EE_OK:
            raise InputError(f"espeak-ng could not speak {text[:40]!r} (status {status})")
        if not self._chunks:
            return np.zeros(0, np.float32)
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0

    def phonemes(self, text: str, voice: str, ipa: bool = True) -> str:
        """What espeak-ng would say for ``text``, in IPA (or, ``ipa`` false, in espeak-ng's
        ASCII phoneme mnemonics): one word of phonemes per spoken word, with its stress marks
        (and tone digits for tone languages)."""
        self._use_voice(voice)
        remaining = ctypes.c_char_p(text.encode("utf-8"))
        clauses = []
        while remaining.value:  # one clause a call; the pointer moves past it
            clause = self._lib.espeak_TextToPhonemes(
                ctypes.byref(remaining), _CHARS_UTF8, _PHONEMES_IPA if ipa else _PHONEMES_MNEMONIC
            )
            clauses.append(clause.decode("utf-8"))
        return " ".join(" ".join(clauses).split())

    def reading(self, text: str, voice: str, tone: bool = True) -> str:
        """espeak-ng's reading of ``text`` in its mnemonics, without stress marks, pauses, links
        and language switches, words joined by ``_``; ``tone`` false also drops the tone digits
        (for a tone language such as ``cmn``, whose mnemonics write each tone's contour: 55, 35,
        214, 51, 11; its IPA writes tones 1 and 4 alike)."""
        spoken = "_".join(_MNEMONIC_MARKS.sub("", self.phonemes(text, voice, ipa=False)).split())
        return spoken if tone else _TONE_DIGITS.sub("", spoken)


@functools.lru_cache(maxsize=1)
def get_espeak() -> Espeak:
    """The process's espeak-ng instance, started on first use."""
    return Espeak()


def synthesize_afresh(
    text: str, voice: str, rate: int = 175, pitch: int = 50, seed: int = 0
) -> np.ndarray:
    """:meth:`Espeak.synthesize` in a new Python process (``python -m polyspeech.tts.espeak``),
    so the speech depends on the arguments alone; about 0.3 s more a call. A new interpreter
    rather than a fork: a fork would carry this process's espeak-ng state, and multiprocessing's
    fork server re-runs a calling script that lacks a ``__main__`` guard."""
    request = json.dumps([text, voice, rate, pitch, seed]).encode()
    done = subprocess.run([sys.executable, "-m", __name__], input=request, capture_output=True)
    if done.returncode != 0:
        kind, _, message = (
            done.stderr.decode(errors="replace").strip().rpartition("\n")[2].partition(":")
        )
        error = InputError if kind == InputError.__name__ else DependencyError
        raise error(message.strip() if message else f"espeak-ng's process failed: {kind}")
    return np.frombuffer(done.stdout, np.float32).copy()


def _speak_request() -> None:
    """One :func:`synthesize_afresh` request: JSON arguments on stdin, float32 samples on
    stdout; a polyspeech error as ``Kind: message`` on stderr, exit status 2."""
    text, voice, rate, pitch, seed = json.loads(sys.stdin.buffer.read())
    try:
        samples = get_espeak().synthesize(text, voice, rate, pitch, seed)
    except PolyspeechError as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(2)
    sys.stdout.buffer.write(samples.astype(np.float32).tobytes())


if __name__ == "__main__":
    _speak_request()
