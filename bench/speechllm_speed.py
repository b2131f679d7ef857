"""Speech-LLM speed on the CPU: encoder + adapter time, and LLM decoding throughput.

Random weights in MooER's encoder shape (SAN-M, 50 blocks of 512) and a Qwen2-0.5B-shaped LLM
(896 wide, 24 layers, 14 heads, 2 KV heads, 151,936 tokens), so the compute is the real one.
The same 8 clips are decoded three ways (beam 4, the answer's length capped by the clip's
duration, which a random LLM always reaches; the repetition guard off, see ``build``):

- ``plain loop``: one ``generate`` call per file, nothing of ours;
- ``polyspeech, batch 1``: ``SpeechLlm.answer`` one file at a time;
- ``polyspeech, batch 8``: ``SpeechLlm.answer`` on all eight (left-padded).

    python bench/speechllm_speed.py            # the full shapes (about 3 GB of memory)
    python bench/speechllm_speed.py --smoke    # small shapes, clips a third as long

Prints a table and writes JSON (``--out``, default bench/results/speechllm_speed.json), each
decoding run with ``vs_batch_1``: its tokens/s over ``polyspeech, batch 1``'s.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from polyspeech.files import atomic_text_file


def build(small: bool):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from polyspeech.speechllm.adapter import AdapterConfig, FrameStackAdapter
    from polyspeech.speechllm.encoders import ParaformerSpeechEncoder
    from polyspeech.speechllm.frontend import ParaformerFrontend
    from polyspeech.speechllm.model import DecodingConfig, SpeechLlm
    from polyspeech.speechllm.sanm import SanmConfig, SanmEncoder
    from polyspeech.speechllm.tokenizer import train_tokenizer

    torch.manual_seed(0)
    sanm = SanmConfig(num_blocks=4 if small else 50, dropout_rate=0.0)
    llm_shape = dict(  # Qwen2-0.5B
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
    )
    if small:
        llm_shape = dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=2000,
        )
    tokenizer = train_tokenizer(["transcribe speech to text", "今天天气很好"], vocab_size=300)
    llm = Qwen2ForCausalLM(
        Qwen2Config(
            **llm_shape,
            tie_word_embeddings=True,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    ).eval()
    encoder = ParaformerSpeechEncoder(ParaformerFrontend(None), SanmEncoder(sanm).eval())
    adapter = FrameStackAdapter(AdapterConfig(512, llm_shape["hidden_size"]))
    # no repetition guard: a random LLM repeats itself, and the guard would cut its answers
    # (not the beam search's steps), so every run decodes up to the same length limits
    decoding = DecodingConfig(repeat_tokens=10**9)
    return SpeechLlm(encoder, adapter, llm, tokenizer, decoding=decoding).eval()


def speech(seconds: list[float]) -> list[np.ndarray]:
    import soxr

    from polyspeech.data.texts import load_texts
    from polyspeech.tts.espeak import get_espeak

    espeak, clips = get_espeak(), []
    for text, length in zip(load_texts("eng").sentences, seconds, strict=False):
        audio = soxr.resample(espeak.synthesize(text, "en-us"), espeak.sample_rate, 16000)
        audio = np.pad(audio, (0, max(0, int(length * 16000) - len(audio))))
        clips.append(audio[: int(length * 16000)].astype(np.float32))
    return clips


def count_tokens(rows: list[list[int]], eos: int) -> int:
    return sum(row.index(eos) if eos in row else len(row) for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="small shapes, shorter clips")
    parser.add_argument("--out", type=Path, default=Path("bench/results/speechllm_speed.json"))
    args = parser.parse_args()
    model = build(args.smoke)
    seconds = [2.0, 2.4, 2.8, 3.2, 2.2, 2.6, 3.0, 3.4]
    clips = speech([s / 3 for s in seconds] if args.smoke else seconds)  # smoke: fewer tokens
    eos = model.tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = model.decoding
    rows = []
    with torch.inference_mode():
        started = time.perf_counter()
        model.audio_embeddings(clips)
        encode_s = time.perf_counter() - started
        rows.append({"run": "encoder + adapter, 8 clips", "seconds": encode_s})

        recorded: list[list[int]] = []
        generate = model.llm.generate

        def recording(*args, **kwargs):
            output = generate(*args, **kwargs)
            recorded.extend(output.tolist())
            return output

        prompt = model.prompt_ids("asr")
        started = time.perf_counter()
        plain_rows = []
        for clip in clips:  # the plain loop: nothing of ours but the embeddings
            embeds, mask = model.inputs(model.audio_embeddings([clip]), prompt)
            limit = math.ceil(config.tokens_per_second * len(clip) / 16000 + 4)  # as ours
            out = model.llm.generate(
                inputs_embeds=embeds,
                attention_mask=mask,
                num_beams=config.num_beams,
                max_new_tokens=limit,
                length_penalty=config.length_penalty,
                early_stopping=True,
                do_sample=False,
                eos_token_id=eos,
                pad_token_id=model.tokenizer.pad_token_id,
            )
            plain_rows += out.tolist()
        rows.append(
            {
                "run": "plain loop, generate per file",
                "seconds": time.perf_counter() - started,
                "tokens": count_tokens(plain_rows, eos),
            }
        )
        model.llm.generate = recording
        for batch in (1, 8):
            recorded.clear()
            started = time.perf_counter()
            for first in range(0, len(clips), batch):
                model.answer(clips[first : first + batch], "asr")
            rows.append(
                {
                    "run": f"polyspeech, batch {batch}",
                    "seconds": time.perf_counter() - started,
                    "tokens": count_tokens(recorded, eos),
                }
            )
    for row in rows:
        if "tokens" in row:
            row["tokens_per_s"] = row["tokens"] / row["seconds"]
    single = next(r for r in rows if r["run"] == "polyspeech, batch 1")["tokens_per_s"]
    for row in rows:
        if "tokens" in row:
            row["vs_batch_1"] = row["tokens_per_s"] / single
            print(
                f"{row['run']:32s} {row['seconds']:7.1f} s  {row['tokens']:4d} tokens  "
                f"{row['tokens_per_s']:6.1f} tokens/s  ({row['vs_batch_1']:.2f}x batch 1)"
            )
        else:
            print(f"{row['run']:32s} {row['seconds']:7.1f} s")
    report = {
        "smoke": args.smoke,
        "threads": torch.get_num_threads(),
        "decoding": config.to_dict(),
        "rows": rows,
    }
    with atomic_text_file(args.out) as stream:
        stream.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
