"""polyspeech: multilingual speech recognition, translation, alignment, language ID, synthesis."""

from __future__ import annotations

from polyspeech import align
from polyspeech.audio import load_audio
from polyspeech.errors import DependencyError, InputError, PolyspeechError
from polyspeech.results import Result, Segment, Word

__version__ = "0.1.0"


def load(model: str = "builtin:ctc", device: str = "cpu", dtype: str = "auto"):
    """Load a model folder (or a builtin name such as ``builtin:ctc``) for transcription.

    ``dtype`` is ``float32``, ``bfloat16``, ``int8`` (CPU: int8 weights in the linear layers) or
    ``auto``: bfloat16 where the processor computes it fast (CUDA with bf16, a CPU with AVX-512
    or AMX), else int8 on a CPU and float32 on a GPU.
    Returns a :class:`polyspeech.ctc.model.CtcModel`; call ``transcribe(model, audio, lang)``.
    """
    from polyspeech.ctc.model import CtcModel

    return CtcModel(model, device=device, precision=dtype)


def transcribe(audio, model=None, lang: str | None = None, batch_size: int = 4) -> Result:
    """Transcribe ``audio`` (anything :func:`load_audio` takes) with ``model`` (default builtin)."""
    from polyspeech.ctc.transcribe import transcribe as transcribe_samples

    model = (
        model if model is not None and not isinstance(model, str) else load(model or "builtin:ctc")
    )
    return transcribe_samples(model, load_audio(audio), lang, batch_size)


__all__ = [
    "DependencyError",
    "InputError",
    "PolyspeechError",
    "Result",
    "Segment",
    "Word",
    "__version__",
    "align",
    "load",
    "load_audio",
    "transcribe",
]
