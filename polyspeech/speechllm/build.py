"""A new speech LLM to train from scratch: an encoder from a model folder or hub id, a fresh
adapter, and a small causal LM of the Qwen2 architecture with a byte-level BPE tokenizer learnt
from the training texts. ``polyspeech train speechllm --init CONFIG`` builds one and trains it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from polyspeech.errors import InputError
from polyspeech.files import read_config
from polyspeech.speechllm.adapter import AdapterConfig, FrameStackAdapter
from polyspeech.speechllm.encoders import ENCODER_TYPES, folder_encoder
from polyspeech.speechllm.model import SpeechLlm
from polyspeech.speechllm.tokenizer import train_tokenizer


@dataclass(frozen=True)
class NewSpeechLlmConfig:
    encoder: str = "builtin:ctc"  # a model folder, builtin name or hub id (ORG/NAME[@REV])
    encoder_type: str = "conformer"  # conformer (our CTC models), whisper or wav2vec2
    adapter_stack: int = 3  # the conformer's 40 ms frames, three by three: 120 ms
    adapter_hidden: int = 512
    vocab_size: int = 3000
    llm: dict = field(default_factory=dict)  # Qwen2Config sizes (hidden_size, num_hidden_layers..)
    languages: tuple[str, ...] = ("cmn", "eng")
    multitask: bool = True
    seed: int = 0

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> NewSpeechLlmConfig:
        try:
            data = read_config(path, cls, "speech-LLM config")
            if "languages" in data:
                data["languages"] = tuple(data["languages"])
            return cls(**data)
        except (OSError, ValueError, TypeError) as error:
            raise InputError(f"{path}: not a speech-LLM init config ({error})") from None


def new_speechllm(config: NewSpeechLlmConfig, texts: Iterable[str]) -> SpeechLlm:
    """A speech LLM with ``config``'s encoder and a random adapter and LLM; the tokenizer is
    learnt from ``texts`` (the training transcripts and translations)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if config.encoder_type not in ENCODER_TYPES[1:]:
        raise InputError(
            f"encoder_type {config.encoder_type!r}: a new speech LLM takes one of "
            f"{', '.join(ENCODER_TYPES[1:])}"
        )
    encoder = folder_encoder(config.encoder_type, config.encoder)
    tokenizer = train_tokenizer(texts, config.vocab_size)
    torch.manual_seed(config.seed)
    llm_config = Qwen2Config(
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **config.llm,
    )
    llm = Qwen2ForCausalLM(llm_config)
    adapter = FrameStackAdapter(
        AdapterConfig(
            encoder.output_size, llm_config.hidden_size, config.adapter_stack, config.adapter_hidden
        )
    )
    model = SpeechLlm(encoder, adapter, llm, tokenizer, multitask=config.multitask)
    model.languages = list(config.languages)
    return model
