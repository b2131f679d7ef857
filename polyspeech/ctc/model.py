"""CTC recognisers loaded from a folder: ours (fbank conformer) or Hugging Face wav2vec2 (MMS).

Both keep one shared base and, per language, an ``adapter.<lang>.safetensors`` file and a
vocabulary in a nested ``vocab.json``. Choosing a language loads only its adapter (a few
thousand to ~2M weights), never the base again; the most recently used adapters stay in memory.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from polyspeech.audio import SAMPLE_RATE
from polyspeech.audio.features import fbank
from polyspeech.ctc.conformer import MODEL_TYPE
from polyspeech.ctc.folder import adapter_path, load_conformer_base, load_language_adapter
from polyspeech.errors import InputError
from polyspeech.text.languages import to_iso639_3
from polyspeech.text.vocab import Vocabulary, load_vocabularies

ASSETS = Path(__file__).resolve().parent.parent / "assets"
BUILTIN = {"builtin:ctc": ASSETS / "ctc", "builtin:align": ASSETS / "align"}
BUILTIN_LM = {"builtin:ctc-lm": ASSETS / "ctc-lm"}  # its character n-grams, one per language


def resolve_model_folder(name: str | Path) -> Path:
    """A model folder from a path or a builtin name (``builtin:ctc``)."""
    if str(name) in BUILTIN:
        folder = BUILTIN[str(name)]
        if not (folder / "config.json").is_file():
            raise InputError(f"{name}: the embedded model is not installed ({folder} is missing)")
        return folder
    folder = Path(name)
    if not folder.is_dir():
        raise InputError(f"{folder}: model folder not found")
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: not a model folder (no config.json)")
    return folder


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """``float32``, ``bfloat16``, or ``auto``: bf16 only where the hardware computes it fast."""
    if name == "auto":
        if torch.device(device).type == "cuda":
            fast = torch.cuda.is_bf16_supported()
        else:  # oneDNN's fast bf16 kernels need AVX-512 or AMX
            fast = torch.backends.cpu.get_cpu_capability().startswith(("AVX512", "AMX"))
        return torch.bfloat16 if fast else torch.float32
    if name not in ("float32", "bfloat16"):
        raise InputError(f"dtype {name!r}: expected float32, bfloat16 or auto")
    return getattr(torch, name)


class CtcModel:
    """A CTC recogniser: ``log_probs(samples, lang)`` for audio of up to about 30 s."""

    def __init__(
        self,
        folder: str | Path,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        cache_size: int = 8,
    ) -> None:
        self.folder = resolve_model_folder(folder)
        self.device = torch.device(device)
        self.dtype = dtype
        self._cache: OrderedDict[str, object] = OrderedDict()
        self._cache_size = cache_size
        self._active: str | None = None
        config = json.loads((self.folder / "config.json").read_text())
        model_type = config.get("model_type")
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
            self._network, vocabularies = self._load_wav2vec2(config)
            self.frame_shift = 320 / SAMPLE_RATE
        else:
            raise InputError(
                f"{self.folder / 'config.json'}: model_type {model_type!r} is not a CTC model "
                f"(expected {MODEL_TYPE!r} or 'wav2vec2')"
            )
        self._vocabularies = vocabularies
        self._network.to(self.device, dtype).eval()

    def _load_wav2vec2(self, config: dict) -> tuple[torch.nn.Module, dict]:
        from transformers import Wav2Vec2ForCTC

        if not config.get("architectures", ["Wav2Vec2ForCTC"])[0].endswith("ForCTC"):
            raise InputError(
                f"{self.folder / 'config.json'}: not a CTC model ({config['architectures']})"
            )
        # straight into the working precision: a 1B model never sits in memory twice
        model = Wav2Vec2ForCTC.from_pretrained(self.folder, dtype=self.dtype)
        vocabularies = load_vocabularies(self.folder / "vocab.json")
        self._normalize = (
            json.loads((self.folder / "preprocessor_config.json").read_text()).get(
                "do_normalize", True
            )
            if (self.folder / "preprocessor_config.json").is_file()
            else True
        )
        return model, vocabularies

    @property
    def languages(self) -> list[str]:
        """Languages with both a vocabulary and an adapter file (empty: a one-language model)."""
        return sorted(
            lang
            for lang in self._vocabularies
            if lang is not None and adapter_path(self.folder, lang).is_file()
        )

    def resolve_language(self, lang: str | None) -> str | None:
        if not self.languages:
            return None  # a plain fine-tuned model: one vocabulary, no adapters
        if lang is None:
            if len(self.languages) == 1:
                return self.languages[0]
            raise InputError(
                f"{self.folder}: this model has {len(self.languages)} languages; choose one with "
                f"--lang ({', '.join(self.languages)})"
            )
        code = to_iso639_3(lang)
        if code not in self.languages:
            raise InputError(
                f"{adapter_path(self.folder, code)}: no adapter for {code}; available: "
                f"{', '.join(self.languages)}"
            )
        return code

    def vocabulary(self, lang: str | None) -> Vocabulary:
        return self._vocabularies[self.resolve_language(lang)]

    def _activate(self, lang: str | None) -> None:
        """Make ``lang``'s adapter the one in use, reading it from disk only if not cached."""
        if lang is None or lang == self._active:
            return
        if lang in self._cache:
            self._cache.move_to_end(lang)
        else:
            if self._conformer is not None:
                adapter = load_language_adapter(
                    self.folder, self._conformer, lang, self._vocabularies[lang]
                )
                self._cache[lang] = adapter.to(self.device, self.dtype).eval()
            else:
                self._cache[lang] = load_file(adapter_path(self.folder, lang))
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        if self._conformer is not None:
            self._conformer.adapters = torch.nn.ModuleDict({lang: self._cache[lang]})
        else:
            self._apply_wav2vec2_adapter(lang, self._cache[lang])
        self._active = lang

    def _apply_wav2vec2_adapter(self, lang: str, weights: dict[str, torch.Tensor]) -> None:
        model = self._network
        expected = {
            f"{name}.{param}"
            for name, module in model.named_modules()
            if type(module).__name__ == "Wav2Vec2AttnAdapterLayer"
            for param, _ in module.named_parameters()
        } | {"lm_head.weight", "lm_head.bias"}
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
        model.load_state_dict(weights, strict=False)

    @torch.inference_mode()
    def log_probs(self, batch: list[np.ndarray], lang: str | None) -> list[np.ndarray]:
        """Per clip (16 kHz float32), log-probabilities of shape (frames, vocabulary)."""
        code = self.resolve_language(lang)
        self._activate(code)
        if self._conformer is not None:
            features = [torch.from_numpy(fbank(samples)) for samples in batch]
            lengths = torch.tensor([len(f) for f in features])
            padded = torch.nn.utils.rnn.pad_sequence(features, batch_first=True)
            log_probs, out_lengths = self._conformer(
                padded.to(self.device, self.dtype), lengths.to(self.device), code
            )
        else:
            clips = [torch.from_numpy(samples) for samples in batch]
            if self._normalize:
                clips = [(c - c.mean()) / torch.sqrt(c.var() + 1e-7) for c in clips]
            lengths = torch.tensor([len(c) for c in clips])
            padded = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
            mask = torch.arange(padded.shape[1])[None, :] < lengths[:, None]
            logits = self._network(
                padded.to(self.device, self.dtype), attention_mask=mask.to(self.device)
            ).logits
            log_probs = logits.float().log_softmax(dim=-1)
            out_lengths = self._network._get_feat_extract_output_lengths(lengths)
        return [
            log_probs[row, : int(out_lengths[row])].float().cpu().numpy()
            for row in range(len(batch))
        ]
