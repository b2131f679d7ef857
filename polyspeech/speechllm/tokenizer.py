"""A byte-level BPE tokenizer with Qwen2's ChatML special tokens, trained here with `tokenizers`.

Byte-level, so any text encodes (no unknown token); the special tokens are Qwen2's names, so the
same prompts and end-of-answer token serve a small LM trained here and a released Qwen2.
"""

from __future__ import annotations

from collections.abc import Iterable

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A ``transformers`` fast tokenizer of at most ``vocab_size`` tokens learnt from ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )


def decode_whole_characters(tokenizer, ids: list[int]) -> str:
    """The text of ``ids`` (special tokens left out) made of whole characters only.

    A byte-level BPE token may hold part of a character's bytes, and an LLM may end its answer,
    or go on to another character, before the rest: the decoder writes U+FFFD for every such
    run of bytes, so dropping it drops exactly the characters that never came whole.
    """
    return tokenizer.decode(ids, skip_special_tokens=True).replace("\ufffd", "")
