"""CTC recognisers loaded from a folder: ours (fbank conformer) or Hugging Face wav2vec2 (MMS).

Both keep one shared base and, per language, an ``adapter.<lang>.safetensors`` file and a
vocabulary in a nested ``vocab.json``. Choosing a language loads only its adapter (a few
thousand to ~2M weights), never the base again; the most recently used adapters stay in memory.
A language whose adapter the base weights already are (mms-1b-all's English:
:func:`carried_language`) reads no adapter file at all.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from polyspeech.audio import SAMPLE_RATE
from polyspeech.ctc.conformer import MODEL_TYPE, input_features
from polyspeech.ctc.folder import adapter_path, load_conformer_base, load_language_adapter
from polyspeech.ctc.precision import native_bf16, resolve_precision
from polyspeech.ctc.quantize import quantize_linear_layers
from polyspeech.ctc.wav2vec2 import convolutions_in_bf16, load_wav2vec2, return_freed_memory
from polyspeech.devices import resolve_device
from polyspeech.errors import InputError
from polyspeech.hub import BUILTIN as BUILTIN  # where serve, speechllm and tests look for it
from polyspeech.hub import ModelSource, resolve_model
from polyspeech.lid.model import LidModel
from polyspeech.options import AUTO, Recognizer, TranscribeOptions
from polyspeech.results import Result
from polyspeech.text.languages import model_language, to_iso639_3
from polyspeech.text.vocab import Vocabulary, load_vocabularies
from polyspeech.weights import read_safetensors

# The LM a builtin model decodes with unless told otherwise, as transformers' ASR pipeline does
# for a checkpoint that ships one (builtin:ctc's test CER either way: docs/guide.md, "Status")
DEFAULT_LM = {"builtin:ctc": "builtin:ctc-lm"}
NO_LM = "none"  # --lm none: greedy decoding
# The language an MMS adapter model's base weights carry unless its config names another:
# transformers' default target_lang (its MMS docs: "By default MMS loads adapter weights for
# English"); mms-1b-all's lm_head has English's 154 rows (docs/published-models.md)
DEFAULT_TARGET_LANG = "eng"


# The shortest clip the networks take: the conformer's two stride-2 3x3 convolutions need 7
# filterbank frames (85 ms), wav2vec2's first convolution 400 samples. Shorter clips (a
# 30 s window's last few milliseconds) are heard padded with silence to this length.
MIN_SAMPLES = SAMPLE_RATE // 10


def _at_least(samples: np.ndarray, length: int) -> np.ndarray:
    return samples if len(samples) >= length else np.pad(samples, (0, length - len(samples)))


def carried_language(
    config: dict, head_rows: int, vocabularies: dict[str | None, Vocabulary]
) -> str | None:
    """The language whose adapter and CTC head a wav2vec2 adapter model's base weights already
    are, so that its ``adapter.<lang>.safetensors`` need not be read: mms-1b-all's base carries
    English's (transformers takes the base for ``eng`` unless ``target_lang`` says otherwise).
    Only where the head has exactly that language's vocabulary size; None for a model without
    adapters, or whose head fits another vocabulary."""
    if config.get("adapter_attn_dim") is None:
        return None
    lang = config.get("target_lang") or DEFAULT_TARGET_LANG
    vocabulary = vocabularies.get(lang)
    return lang if vocabulary is not None and len(vocabulary) == head_rows else None


class CtcModel(Recognizer):
    """A CTC recogniser: ``transcribe(audio, lang)`` for audio of any length, on top of
    ``log_probs(samples, lang)`` for pieces of up to about 30 s."""

    family = "ctc"
    LEGACY_ORDER = ("lang", "batch_size", "vad", "lm")  # transcribe's options by position
    TASKS = ("transcribe",)

    def __init__(
        self,
        model: str | Path | ModelSource,
        device: str = "cpu",
        precision: str = "float32",
        cache_size: int = 8,
    ) -> None:
        """``model``: a folder, a builtin name, a Hub id (see
        :func:`polyspeech.hub.resolve_model`) or a resolved :class:`ModelSource`."""
        self.source = model if isinstance(model, ModelSource) else resolve_model(model)
        self.folder = self.source.folder
        self.default_lm = DEFAULT_LM.get(self.source.name)
        self.device = resolve_device(device)
        config = json.loads(self.source.config_file().read_text())
        model_type = config.get("model_type")
        self.precision = resolve_precision(precision, device, model_type == "wav2vec2")
        # the activations' type; int8 models load in bf16 (half the memory) and compute in fp32
        self.dtype = torch.bfloat16 if self.precision == "bfloat16" else torch.float32
        load_dtype = torch.float32 if self.precision == "float32" else torch.bfloat16
        self._cache: OrderedDict[str, object] = OrderedDict()
        self._cache_size = cache_size
        self._active: str | None = None
        self._identifiers: dict[str, object] = {}  # LID models by name, loaded when first needed
        if not (self.folder / "vocab.json").is_file():
            raise InputError(
                f"{self.folder / 'vocab.json'}: missing; a CTC model needs its vocabulary"
            )
        if model_type == MODEL_TYPE:
            self._conformer, vocabularies = load_conformer_base(self.folder)
            self._network: torch.nn.Module = self._conformer
            self.frame_shift = self._conformer.config.frame_shift
        elif model_type == "wav2vec2":
            self._conformer = None
            self._network, vocabularies = self._load_wav2vec2(
                config, load_dtype, self.precision == "int8"
            )
            self.frame_shift = 320 / SAMPLE_RATE
        else:
            raise InputError(
                f"{self.folder / 'config.json'}: model_type {model_type!r} is not a CTC model "
                f"(expected {MODEL_TYPE!r} or 'wav2vec2')"
            )
        self._vocabularies = vocabularies
        if self.precision == "int8":  # what is left (all of a conformer) and the rest to fp32
            quantize_linear_layers(self._network)
        self._network.to(self.device, self.dtype).eval()
        if self.precision == "int8" and self._conformer is None and native_bf16():
            convolutions_in_bf16(self._network)
        # the language whose adapter and head the base weights are, and a copy of them
        self._carried: tuple[str, dict[str, torch.Tensor]] | None = None
        if self._conformer is None:
            carried = carried_language(config, self._network.lm_head.out_features, vocabularies)
            if carried is not None:
                weights = self._network.adapter_weights()
                self._carried = (carried, {k: w.detach().cpu().clone() for k, w in weights.items()})
                self._active = carried

    def _load_wav2vec2(
        self, config: dict, dtype: torch.dtype, quantize: bool
    ) -> tuple[torch.nn.Module, dict]:
        if not config.get("architectures", ["Wav2Vec2ForCTC"])[0].endswith("ForCTC"):
            raise InputError(
                f"{self.folder / 'config.json'}: not a CTC model ({config['architectures']})"
            )
        model = load_wav2vec2(self.folder, dtype, quantize)
        vocabularies = load_vocabularies(self.folder / "vocab.json")
        self._normalize = (
            json.loads((self.folder / "preprocessor_config.json").read_text()).get(
                "do_normalize", True
            )
            if (self.folder / "preprocessor_config.json").is_file()
            else True
        )
        return model, vocabularies

    def _recognise(
        self, clips: list[np.ndarray], languages: list[str | None], options: TranscribeOptions
    ) -> list[Result]:
        """Transcribe (:class:`Recognizer`) with segments and timed words: see
        :func:`polyspeech.ctc.transcribe.transcribe_many` (batches of 4 by default). Language
        ``auto`` (the default of a model of several languages) has ``options.lid`` (a LID folder,
        builtin name or :class:`LidModel`) identify each segment's language. Each result's
        ``source`` names the model (:meth:`polyspeech.hub.ModelSource.describe`)."""
        from polyspeech.ctc.transcribe import transcribe_many  # it pulls in numba, 0.3 s

        several = len(self.languages) > 1
        langs = [AUTO if lang is None and several else lang for lang in languages]
        identifier = None
        if AUTO in langs:
            lid = options.lid
            if not isinstance(lid, LidModel):
                if str(lid) not in self._identifiers:
                    self._identifiers[str(lid)] = LidModel(lid, device=str(self.device))
                lid = self._identifiers[str(lid)]
            identifier = lid
        results = transcribe_many(
            self,
            clips,
            langs,
            options.batch_size or 4,
            options.vad_filter,
            self.decoding_lm(options.lm),
            identifier,
            options.vad_parameters.threshold,
            options.beam_size,
        )
        for result in results:
            result.source = self.source.describe()
        return results

    def decoding_lm(self, lm: str | Path | None) -> str | Path | None:
        """The LM that ``lm`` means here: None is the model's own (:data:`DEFAULT_LM`, or
        greedy for a model without one), ``"none"`` is greedy."""
        if lm is None:
            return self.default_lm
        return None if str(lm) == NO_LM else lm

    @property
    def languages(self) -> list[str]:
        """Languages with both a vocabulary and an adapter file (empty: a one-language model);
        a Hub model's adapter files are those of its repository, downloaded or not."""
        return sorted(
            lang
            for lang in self._vocabularies
            if lang is not None and self.source.has_file(adapter_path(self.folder, lang).name)
        )

    def resolve_language(self, lang: str | None) -> str | None:
        """The model's key for ``lang`` (see :func:`polyspeech.text.languages.model_language`:
        ``zh`` and ``cmn`` are mms-1b-all's ``cmn-script_simplified``); a language the model
        lacks is an error listing those it has."""
        if not self.languages:
            return None  # a plain fine-tuned model: one vocabulary, no adapters
        if lang is None:
            if len(self.languages) == 1:
                return self.languages[0]
            raise InputError(
                f"{self.folder}: this model has {len(self.languages)} languages; choose one with "
                f"--lang ({', '.join(self.languages)})"
            )
        code = model_language(lang, self.languages, str(self.folder))
        if code is None:
            named = to_iso639_3(lang)  # a code that names no language: an error saying so
            raise InputError(
                f"{adapter_path(self.folder, named)}: no adapter for {named}; available: "
                f"{', '.join(self.languages)}"
            )
        return code

    def vocabulary(self, lang: str | None) -> Vocabulary:
        return self._vocabularies[self.resolve_language(lang)]

    def _activate(self, lang: str | None) -> None:
        """Make ``lang``'s adapter the one in use, reading it from disk only if not cached (a Hub
        model's adapter is downloaded the first time its language is used)."""
        if lang is None or lang == self._active:
            return
        if lang in self._cache:
            self._cache.move_to_end(lang)
        elif self._carried is not None and lang == self._carried[0]:
            self._cache[lang] = self._carried[1]  # in the base weights: no file to read
        else:
            self.source.fetch(adapter_path(self.folder, lang).name)
            if self._conformer is not None:
                adapter = load_language_adapter(
                    self.folder, self._conformer, lang, self._vocabularies[lang]
                )
                self._cache[lang] = adapter.to(self.device, self.dtype).eval()
            else:
                self._cache[lang] = read_safetensors(adapter_path(self.folder, lang))
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        if self._conformer is not None:
            self._conformer.adapters = torch.nn.ModuleDict({lang: self._cache[lang]})
        else:
            self._apply_wav2vec2_adapter(lang, self._cache[lang])
        self._active = lang

    def _mixed_log_probs(self, batch: list[np.ndarray], codes: list[str | None]) -> list:
        distinct = list(dict.fromkeys(codes))
        if self._conformer is None or len(distinct) == 1 or len(distinct) > self._cache_size:
            found: list = [None] * len(batch)
            for code in distinct:
                rows = [row for row, other in enumerate(codes) if other == code]
                for row, log_probs in zip(
                    rows, self.log_probs([batch[row] for row in rows], code), strict=True
                ):
                    found[row] = log_probs
            return found
        for code in distinct:
            self._activate(code)  # into the cache, which holds them all
        self._conformer.adapters = torch.nn.ModuleDict({c: self._cache[c] for c in distinct})
        self._active = None
        log_probs, out_lengths = self._conformer_forward(batch, codes)
        return [
            log_probs[row, : int(out_lengths[row]), : len(self._vocabularies[code])]
            .float()
            .cpu()
            .numpy()
            for row, code in enumerate(codes)
        ]

    def _conformer_forward(self, batch: list[np.ndarray], lang: str | list[str | None]):
        """The conformer's padded log-probabilities of the clips' features, and their lengths."""
        config = self._conformer.config
        features = [torch.from_numpy(input_features(samples, config)) for samples in batch]
        lengths = torch.tensor([len(f) for f in features])
        padded = torch.nn.utils.rnn.pad_sequence(features, batch_first=True)
        return self._conformer(padded.to(self.device, self.dtype), lengths.to(self.device), lang)

    def _apply_wav2vec2_adapter(self, lang: str, weights: dict[str, torch.Tensor]) -> None:
        model = self._network
        expected = set(model.adapter_weights())
        if set(weights) != expected:
            missing = sorted(expected - set(weights))[:3]
            unexpected = sorted(set(weights) - expected)[:3]
            raise InputError(
                f"{adapter_path(self.folder, lang)}: adapter does not fit the model "
                f"(missing {missing}, unexpected {unexpected})"
            )
        vocab_size, hidden = weights["lm_head.weight"].shape
        if model.lm_head.out_features != vocab_size:
            model.lm_head = torch.nn.Linear(hidden, vocab_size).to(self.device, self.dtype)
        with torch.no_grad():  # parameter by parameter: an int8 model's other layers have none
            for key, tensor in weights.items():
                module, _, name = key.rpartition(".")
                getattr(model.get_submodule(module), name).copy_(tensor)

    @torch.inference_mode()
    def log_probs(
        self, batch: list[np.ndarray], lang: str | list[str | None] | None
    ) -> list[np.ndarray]:
        """Per clip (16 kHz float32), log-probabilities of shape (frames, vocabulary).

        ``lang`` is the batch's language or a list, one per clip: a conformer then runs the
        batch at once, each row through its own adapter; a wav2vec2 model one language at a
        time (its adapter is copied into the network).

        On a CPU a wav2vec2 model takes the clips one at a time: a batch, padded to its
        longest clip and masked, saves nothing there and holds more memory (docs/guide.md,
        "Recognition").
        """
        batch = [_at_least(samples, MIN_SAMPLES) for samples in batch]
        if isinstance(lang, list):
            return self._mixed_log_probs(batch, [self.resolve_language(code) for code in lang])
        code = self.resolve_language(lang)
        self._activate(code)
        if self._conformer is None and self.device.type == "cpu" and len(batch) > 1:
            return [log_probs for clip in batch for log_probs in self.log_probs([clip], code)]
        if self._conformer is not None:
            log_probs, out_lengths = self._conformer_forward(batch, code)
        else:
            clips = [torch.from_numpy(samples) for samples in batch]
            if self._normalize:
                clips = [(c - c.mean()) / torch.sqrt(c.var() + 1e-7) for c in clips]
            lengths = torch.tensor([len(c) for c in clips])
            padded = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
            mask = None  # without padding there is nothing to mask
            if int(lengths.min()) < padded.shape[1]:
                mask = (torch.arange(padded.shape[1])[None, :] < lengths[:, None]).to(self.device)
            logits = self._network(padded.to(self.device, self.dtype), attention_mask=mask)
            log_probs = logits.float().log_softmax(dim=-1)
            out_lengths = self._network.wav2vec2.output_lengths(lengths)
        result = [
            log_probs[row, : int(out_lengths[row])].float().cpu().numpy()
            for row in range(len(batch))
        ]
        if self._conformer is None and self.device.type == "cpu":
            del logits, log_probs
            return_freed_memory()
        return result
