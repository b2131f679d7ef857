"""polyspeech: multilingual speech recognition, translation, alignment, language ID, synthesis.

Importing polyspeech sets ``GOMP_SPINCOUNT=1000`` (unless ``GOMP_SPINCOUNT`` or
``OMP_WAIT_POLICY`` is set already): torch's OpenMP threads then spin only briefly before they
sleep, instead of milliseconds that starve the working threads when other jobs share the cores
(see :mod:`polyspeech.threads`). It works only if torch is not imported yet: a program that
imports torch before polyspeech keeps the long spinning unless its environment sets it.
"""

from __future__ import annotations

import os

# first, before any import of torch: GNU OpenMP reads it once, when torch loads the library
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")

from polyspeech import align
from polyspeech.audio import load_audio
from polyspeech.errors import DependencyError, InputError, PolyspeechError
from polyspeech.options import TranscribeOptions, VadOptions
from polyspeech.results import Result, Segment, Word

__version__ = "0.1.0"


def load(
    model="builtin:ctc", device: str = "auto", dtype: str = "auto", revision: str | None = None
):
    """Load a model for transcription: a folder, a builtin name such as ``builtin:ctc``, a
    Hugging Face Hub id (``facebook/mms-1b-all``, ``ORG/NAME@REV``, or ``revision``: a branch,
    tag or commit), a ModelScope id (``modelscope:ORG/NAME``) or a resolved
    :class:`polyspeech.hub.ModelSource`. A Hub model is downloaded into the Hub's cache
    (base files first, a language's adapter when that language is used).

    A CTC model gives a :class:`polyspeech.ctc.model.CtcModel`, a speech-LLM (ours or MooER's
    release layout) a :class:`polyspeech.speechllm.model.SpeechLlm`; both answer
    ``load(...).transcribe(audio, language=...)`` with a :class:`Result`.

    ``dtype`` is ``float32``, ``bfloat16``, ``int8`` (CTC on a CPU: int8 weights in the linear
    layers) or ``auto`` (:func:`polyspeech.ctc.precision.resolve_precision`): bfloat16 where the
    processor has it natively (CUDA with bf16, a CPU with AVX-512 bf16 or AMX), else int8 for
    CTC on a CPU and float32 otherwise; an MMS (wav2vec2) model takes int8 on every CPU.
    """
    import torch

    from polyspeech.ctc.model import CtcModel
    from polyspeech.ctc.precision import resolve_precision
    from polyspeech.devices import resolve_device
    from polyspeech.hub import ModelSource, resolve_model
    from polyspeech.speechllm.folder import is_speechllm_folder, load_speechllm
    from polyspeech.weights import loading_model

    device = str(resolve_device(device))  # auto: CUDA where the machine has it
    source = model if isinstance(model, ModelSource) else resolve_model(model, revision)
    folder = source.folder
    with loading_model(folder):
        if is_speechllm_folder(folder):
            precision = resolve_precision(dtype, device)
            if precision == "int8":
                if dtype != "auto":
                    raise InputError(f"{folder}: int8 is for CTC models; use float32 or bfloat16")
                precision = "float32"
            return load_speechllm(source, device, getattr(torch, precision))
        return CtcModel(source, device=device, precision=dtype)


def transcribe(audio, model="builtin:ctc", **options) -> Result:
    """``model`` (a loaded model, or anything :func:`load` takes) transcribes ``audio``: the
    same as ``load(model).transcribe(audio, **options)``, options as
    :class:`polyspeech.options.TranscribeOptions` names them (``language``, ``task``,
    ``word_timestamps``, ``beam_size``, ``vad_filter``, ``vad_parameters``, ``batch_size``...)."""
    loaded = model if hasattr(model, "transcribe") else load(model)
    return loaded.transcribe(audio, **options)


def translate(audio, model="builtin:speechllm", **options) -> Result:
    """``audio`` translated into English by a speech LLM (``model`` loaded, or anything
    :func:`load` takes): :func:`transcribe` with ``task="translate"``; the result's text is the
    translation, its language the speech's."""
    return transcribe(audio, model, task="translate", **options)


def identify(audio, model="builtin:lid", top_k: int = 3, **options):
    """The ``top_k`` most probable languages of ``audio`` and of each of its VAD segments
    (:class:`polyspeech.lid.model.Identification`); ``model`` is a loaded
    :class:`polyspeech.lid.model.LidModel`, an MMS-LID or our LID folder, a builtin name or a Hub
    id (``facebook/mms-lid-126``)."""
    from polyspeech.lid.model import LidModel

    identifier = model if isinstance(model, LidModel) else LidModel(model)
    return identifier.identify(audio, top_k, **options)


def speak(text: str, lang: str | None = None, model=None, **options):
    """``text`` spoken, 16 kHz float32 samples: by an MMS-TTS ``model`` (a folder or a Hub id
    such as ``facebook/mms-tts-eng``), or by espeak-ng in ``lang`` (see
    :func:`polyspeech.tts.speak`)."""
    from polyspeech.tts import speak as synthesise

    return synthesise(text, lang, model, **options)


__all__ = [
    "DependencyError",
    "InputError",
    "PolyspeechError",
    "Result",
    "Segment",
    "TranscribeOptions",
    "VadOptions",
    "Word",
    "__version__",
    "align",
    "identify",
    "load",
    "load_audio",
    "speak",
    "transcribe",
    "translate",
]
