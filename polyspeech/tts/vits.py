"""MMS-TTS voices: a Hugging Face ``VitsModel`` folder (``config.json``, ``model.safetensors``,
``vocab.json``, ``tokenizer_config.json``), one language per folder as Meta publishes them
(``facebook/mms-tts-<lang>``, which may be named by that id). A tokenizer marked ``is_uroman``
reads Latin letters: the text is romanised with uroman first, as the checkpoint was trained,
with the rules of the voice's language (``language`` in ``tokenizer_config.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soxr
import torch

from polyspeech.audio import SAMPLE_RATE
from polyspeech.errors import InputError
from polyspeech.hub import ModelSource, resolve_model
from polyspeech.text.languages import model_language
from polyspeech.text.romanize import romanize
from polyspeech.weights import loading_model


class VitsVoice:
    def __init__(self, model: str | Path | ModelSource) -> None:
        """``model``: a folder, a Hub id or a resolved :class:`ModelSource`."""
        from transformers import VitsModel, VitsTokenizer
        from transformers.utils import logging as transformers_logging

        self.source = model if isinstance(model, ModelSource) else resolve_model(model)
        self.folder = self.source.folder
        config = self.folder / "config.json"
        if not config.is_file():
            raise InputError(f"{self.folder}: not a TTS model folder (no config.json)")
        transformers_logging.disable_progress_bar()
        with loading_model(self.folder):
            if json.loads(config.read_text()).get("model_type") != "vits":
                raise InputError(f"{config}: not a VITS (MMS-TTS) model")
            self.tokenizer = VitsTokenizer.from_pretrained(self.folder)
            self.model = VitsModel.from_pretrained(self.folder).eval()
        # the voice's language as tokenizer_config.json names it (eng, azj-script_latin); None
        # where it names none
        self.language: str | None = getattr(self.tokenizer, "language", None) or None

    def resolve_language(self, lang: str | None) -> str | None:
        """The language to speak in: the voice's own; ``lang`` must name it (``en`` for
        ``eng``, ``azj`` for ``azj-script_latin``), a voice speaks one language only."""
        if lang is None or self.language is None:
            return self.language or lang
        if model_language(lang, [self.language], self.source.name) is None:
            raise InputError(
                f"{self.source.name}: this voice speaks {self.language}, not {lang}; leave out "
                "--lang or choose a voice of that language"
            )
        return self.language

    @torch.inference_mode()
    def speak(
        self, text: str, lang: str | None = None, speaking_rate: float = 1.0, seed: int = 0
    ) -> np.ndarray:
        """16 kHz float32 samples; ``seed`` fixes VITS's noise (the same seed, the same audio),
        ``speaking_rate`` > 1 speaks faster. ``lang``: see :meth:`resolve_language`."""
        lang = self.resolve_language(lang)
        if getattr(self.tokenizer, "is_uroman", False):
            text = romanize(text, lang)  # uroman's rules for the voice's language
        inputs = self.tokenizer(text, return_tensors="pt")
        if inputs["input_ids"].shape[1] == 0:
            raise InputError(f"{self.folder}: nothing in {text[:40]!r} that this voice can read")
        self.model.speaking_rate = speaking_rate
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            waveform = self.model(**inputs).waveform[0].float().numpy()
        finally:
            torch.random.set_rng_state(generator_state)
        rate = self.model.config.sampling_rate
        if rate != SAMPLE_RATE:
            waveform = soxr.resample(waveform, rate, SAMPLE_RATE, quality="HQ")
        return np.clip(waveform, -1.0, 1.0).astype(np.float32)
