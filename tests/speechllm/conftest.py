"""Tiny random speech LLMs in MooER's release layout, built in the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from polyspeech.speechllm.adapter import AdapterConfig, FrameStackAdapter
from polyspeech.speechllm.folder import write_cmvn
from polyspeech.speechllm.frontend import Cmvn
from polyspeech.speechllm.sanm import SanmConfig, SanmEncoder
from polyspeech.speechllm.tokenizer import train_tokenizer

TINY_SANM = SanmConfig(output_size=32, linear_units=48, num_blocks=2, dropout_rate=0.0)
TEXTS = [
    "the cat sat on the mat",
    "今天天气很好",
    "transcribe speech to text",
    "translate speech to english text",
    "we went to the market on sunday",
    "我们明天去公园",
]


def tiny_llm(tokenizer, seed: int = 0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return Qwen2ForCausalLM(config).eval()


def build_mooer_folder(
    folder: Path, seed: int = 0, lora: bool = True, lora_dropout: float = 0.05
) -> Path:
    """paraformer-encoder.pth, am.mvn, adapter_project.pt, lora_weights/ and Qwen2-tiny/."""
    from peft import LoraConfig, get_peft_model

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    encoder = SanmEncoder(TINY_SANM)
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    (folder / "paraformer_encoder").mkdir(exist_ok=True)
    torch.save(encoder.state_dict(), folder / "paraformer_encoder" / "paraformer-encoder.pth")
    rng = np.random.default_rng(seed)
    write_cmvn(
        Cmvn(rng.normal(-8, 1, 560).astype(np.float32), np.full(560, 0.3, np.float32)),
        folder / "paraformer_encoder" / "am.mvn",
    )
    adapter = FrameStackAdapter(AdapterConfig(32, 32, stack=2, hidden_size=40))
    with torch.no_grad():  # strong enough that the audio steers the random LLM
        for parameter in adapter.parameters():
            parameter.mul_(4.0)
    weights = {f"encoder_projector.{k}": v for k, v in adapter.state_dict().items()}
    (folder / "asr_ast_mtl").mkdir(exist_ok=True)
    torch.save(weights, folder / "asr_ast_mtl" / "adapter_project.pt")
    tokenizer = train_tokenizer(TEXTS, vocab_size=300)
    llm = tiny_llm(tokenizer, seed)
    llm.save_pretrained(folder / "Qwen2-tiny")
    tokenizer.save_pretrained(folder / "Qwen2-tiny")
    if lora:
        peft_config = LoraConfig(
            r=4,
            lora_alpha=16,
            lora_dropout=lora_dropout,
            target_modules=[
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ],
            init_lora_weights=False,  # random B too, so LoRA changes the outputs
        )
        get_peft_model(llm, peft_config).save_pretrained(folder / "asr_ast_mtl" / "lora_weights")
    return folder


@pytest.fixture(scope="session")
def mooer_folder(tmp_path_factory) -> Path:
    return build_mooer_folder(tmp_path_factory.mktemp("mooer"))


def clips(seconds: list[float], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for length in seconds:
        t = np.arange(int(length * 16000)) / 16000
        tone = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 900) * t) * np.sin(2 * np.pi * 3 * t)
        out.append((tone + 0.01 * rng.standard_normal(len(t))).astype(np.float32))
    return out
