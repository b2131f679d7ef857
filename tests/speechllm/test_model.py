"""The speech LLM: both folder layouts, LoRA, batching, the decoding guards, strict loading."""

import json

import numpy as np
import pytest
import torch

from polyspeech.errors import InputError
from polyspeech.options import TranscribeOptions, VadOptions
from polyspeech.speechllm.folder import load_speechllm, save_speechllm
from polyspeech.speechllm.model import cut_repeats, heard_language, repeated_tail
from polyspeech.speechllm.tokenizer import (
    SPECIAL_TOKENS,
    decode_whole_characters,
    train_tokenizer,
)
from tests.speechllm.conftest import build_mooer_folder, clips


def logits(model, clip, task="asr"):
    audio = model.audio_embeddings([clip])
    embeds, mask = model.inputs(audio, model.prompt_ids(task))
    with torch.no_grad():
        return model.llm(inputs_embeds=embeds, attention_mask=mask).logits


@pytest.fixture(scope="module")
def mooer_model(mooer_folder):
    return load_speechllm(mooer_folder)


def test_mooer_layout_and_ours_give_identical_outputs(mooer_model, tmp_path):
    save_speechllm(mooer_model, tmp_path / "ours")
    config = json.loads((tmp_path / "ours" / "polyspeech.json").read_text())
    assert config["encoder"]["sanm"]["num_blocks"] == 2 and config["adapter"]["stack"] == 2
    ours = load_speechllm(tmp_path / "ours")
    audio = clips([1.3, 2.2])
    for clip in audio:
        assert torch.equal(logits(mooer_model, clip), logits(ours, clip))
    answers = mooer_model.answer(audio, "asr+ast")
    assert answers == ours.answer(audio, "asr+ast")
    assert any(text for text, _ in answers)  # the random model does say something


def test_lora_is_applied_and_merging_keeps_the_outputs(mooer_folder, mooer_model):
    clip = clips([1.5])[0]
    with_lora = logits(mooer_model, clip)
    with mooer_model.llm.disable_adapter():
        without = logits(mooer_model, clip)
    assert (with_lora - without).abs().max() > 1e-3
    merged = load_speechllm(mooer_folder, merge_lora=True)
    assert not hasattr(merged.llm, "peft_config")
    assert torch.allclose(logits(merged, clip), with_lora, atol=1e-5)


def test_a_file_is_answered_the_same_alone_and_in_a_batch_of_8(mooer_model):
    audio = clips([0.7, 1.9, 1.2, 2.6, 0.9, 1.4, 2.1, 1.0], seed=3)
    batch = mooer_model.answer(audio, "asr")
    alone = [mooer_model.answer([clip], "asr")[0] for clip in audio]
    assert batch == alone
    assert len({text for text, _ in batch}) > 1  # the answers depend on the audio


def test_files_transcribed_together_come_back_as_each_alone(mooer_model):
    files = [np.concatenate(clips([1.3, 0.8], seed=4)), *clips([2.2, 0.6], seed=5)]
    languages = ["eng", "cmn", None]
    both = TranscribeOptions(task="transcribe+translate", vad_filter=False)
    together = mooer_model.transcribe_many(files, language=languages, options=both)
    alone = [
        mooer_model.transcribe(f, language=lang, options=both)
        for f, lang in zip(files, languages, strict=True)
    ]
    assert together == alone and all(r.segments for r in together)


def test_the_training_loss_is_the_answers_alone(mooer_model):
    """Each clip alone, left-padded as in inference: the cross-entropy of its answer tokens only;
    the loss is their mean per clip, then over clips, so audio and prompt positions carry none."""
    audio = clips([1.1, 2.3], seed=6)
    prompts = [mooer_model.prompt_ids("asr"), mooer_model.prompt_ids("ast")]
    answers = [[5, 9, 17, 2], [40, 3]]
    with torch.no_grad():
        loss = mooer_model(audio, prompts, answers)
        by_hand = []
        for clip, prompt, answer in zip(audio, prompts, answers, strict=True):
            embeds, mask = mooer_model.inputs(mooer_model.audio_embeddings([clip]), prompt)
            table = mooer_model.llm.get_input_embeddings()
            embeds = torch.cat([embeds, table(torch.tensor([answer]))], 1)
            mask = torch.cat([mask, torch.ones(1, len(answer), dtype=torch.long)], 1)
            out = mooer_model.llm(inputs_embeds=embeds, attention_mask=mask).logits[0].float()
            predicted = out[-len(answer) - 1 : -1]  # the positions that predict the answer
            by_hand.append(torch.nn.functional.cross_entropy(predicted, torch.tensor(answer)))
    assert torch.allclose(loss, torch.stack(by_hand).mean(), atol=1e-5)
    # a different prompt moves the loss only through what the answer is conditioned on
    assert not torch.allclose(loss, mooer_model(audio, prompts[::-1], answers), atol=1e-5)


def test_the_answer_is_no_longer_than_the_audio_allows(mooer_model, monkeypatch):
    monkeypatch.setattr(
        mooer_model, "decoding", mooer_model.decoding.__class__(tokens_per_second=2.0)
    )
    outputs = []
    generate = mooer_model.llm.generate

    def recording(*args, **kwargs):
        outputs.append(generate(*args, **kwargs))
        return outputs[-1]

    monkeypatch.setattr(mooer_model.llm, "generate", recording)
    mooer_model.answer(clips([1.0, 3.0]), "asr")
    eos = mooer_model.tokenizer.convert_tokens_to_ids("<|im_end|>")
    lengths = [row.index(eos) if eos in row else len(row) for row in outputs[0].tolist()]
    assert lengths == [6, 10]  # 2 a second + 4: the random LLM talks until it is stopped


def test_audio_without_speech_gives_an_empty_result_without_asking_the_llm(
    mooer_model, monkeypatch
):
    def refuse(*args, **kwargs):
        raise AssertionError("the LLM was asked about silence")

    monkeypatch.setattr(mooer_model.llm, "generate", refuse)
    result = mooer_model.transcribe(np.zeros(3 * 16000, np.float32))
    assert result.text == "" and result.segments == [] and result.duration == 3.0


def test_repeated_tails_are_found_and_cut():
    assert repeated_tail([5, 1, 2, 1, 2, 1, 2, 1, 2] + [1, 2] * 4, 16, 4) == 2
    assert repeated_tail([1, 2, 3, 4, 5, 6], 4, 2) == 0
    assert repeated_tail([7] * 15, 16, 4) == 0  # one token must repeat 16 times
    assert cut_repeats([9, 8] + [3, 4, 5] * 6, 16, 4) == [9, 8, 3, 4, 5]
    assert cut_repeats([1, 2, 3], 16, 4) == [1, 2, 3]


def test_a_character_split_across_tokens_is_decoded_only_whole():
    tokenizer = train_tokenizer(["过去 过去 过去"], len(SPECIAL_TOKENS) + 256 + 1)  # one merge
    start, rest = tokenizer("过")["input_ids"]  # 过 is two tokens: its first byte, then two
    wear, stop = tokenizer("穿")["input_ids"], tokenizer("。")["input_ids"]
    assert tokenizer.decode([*wear, start, *stop]) == "穿\ufffd。"  # what a plain decode gives
    assert decode_whole_characters(tokenizer, [*wear, start, *stop]) == "穿。"
    assert decode_whole_characters(tokenizer, [*wear, start]) == "穿"  # an unfinished end
    assert decode_whole_characters(tokenizer, [*wear, start, rest, *stop]) == "穿过。"


def test_an_answer_holds_no_piece_of_a_character(mooer_model, monkeypatch):
    tokenizer = mooer_model.tokenizer
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    today, wear, good = (tokenizer(text)["input_ids"] for text in ("今天", "穿", "好"))
    assert len(wear) == 3  # not in the tokenizer's texts: one token a byte
    said = [today + wear[:2] + good + wear[:1] + [eos]]  # abandoned, then unfinished at the end
    monkeypatch.setattr(mooer_model.llm, "generate", lambda **kwargs: torch.tensor(said))
    assert mooer_model.answer(clips([1.0]), "asr") == [("今天好", None)]


def silence_answered(model, monkeypatch, answers):
    """``model`` answering its pieces, in order, with ``answers``: (transcript, translation)."""
    told = iter(answers)
    monkeypatch.setattr(model, "answer", lambda pieces, task: [next(told) for _ in pieces])


def test_the_script_tells_the_language_heard_among_the_models():
    assert heard_language("我有个iPhone。", ["cmn", "eng"]) == "cmn"
    assert heard_language("I love 北京.", ["cmn", "eng"]) == "eng"
    assert heard_language("Great, we won!", ["eng", "deu"]) is None  # Latin for both
    assert heard_language("42", ["cmn", "eng"]) is None


def test_the_language_is_the_one_heard_or_asked(mooer_model, monkeypatch):
    two_windows = np.zeros(45 * 16000, np.float32)  # without VAD, 30 s and 15 s
    chinese = [("我们明天去公园。", "We go to the park tomorrow."), ("今天天气很好。", "Nice day.")]
    joined = {
        "transcribe": "我们明天去公园。今天天气很好。",
        "translate": "We go to the park tomorrow. Nice day.",
    }
    for task in ("transcribe", "translate"):
        silence_answered(mooer_model, monkeypatch, chinese)
        result = mooer_model.transcribe(two_windows, task=task, vad_filter=False)
        assert result.language == "cmn", task  # for a translation too: the speech's language
        assert [s.language for s in result.segments] == ["cmn", "cmn"]
        assert result.text == joined[task]  # as the text's language is written
    silence_answered(mooer_model, monkeypatch, [("我们明天去公园。", None), ("Nice day.", None)])
    mixed = mooer_model.transcribe(two_windows, vad_filter=False)
    assert [s.language for s in mixed.segments] == ["cmn", "eng"] and mixed.language == "cmn"
    silence_answered(mooer_model, monkeypatch, chinese)
    asked = mooer_model.transcribe(two_windows, language="zh", task="translate", vad_filter=False)
    assert asked.language == "cmn" and {s.language for s in asked.segments} == {"cmn"}


def test_a_sentence_repeated_across_the_pieces_of_a_file_is_kept_once(mooer_model, monkeypatch):
    files = [np.zeros(100 * 16000, np.float32), np.zeros(20 * 16000, np.float32)]  # 4 + 1
    said = ["Great, we won!", "great, we won", "Today is Wednesday.", "Great, we won!"]
    silence_answered(mooer_model, monkeypatch, [(text, None) for text in [*said, said[0]]])
    first, second = mooer_model.transcribe_many(files, language=["eng", "eng"], vad_filter=False)
    assert [s.text for s in first.segments] == [said[0], said[2], said[3]]
    assert [s.start for s in first.segments] == [0.0, 60.0, 90.0]
    assert second.text == said[0]  # another file's pieces are not compared
    silence_answered(mooer_model, monkeypatch, [("今天天气很好。", None), ("今天天气很好", None)])
    assert len(mooer_model.transcribe(files[0][: 40 * 16000], vad_filter=False).segments) == 1


def test_the_vad_threshold_reaches_the_vad(mooer_model, monkeypatch):
    import polyspeech.speechllm.model as speechllm_model

    asked = []

    def pieces(files, max_seconds, vad, threshold):
        asked.append(threshold)
        return [[] for _ in files]

    monkeypatch.setattr(speechllm_model, "audio_pieces", pieces)
    mooer_model.transcribe(clips([1.0])[0], vad_parameters=VadOptions(threshold=0.8))
    mooer_model.transcribe(clips([1.0])[0])
    assert asked == [0.8, 0.5]


def test_missing_and_unexpected_weights_are_named(tmp_path):
    folder = build_mooer_folder(tmp_path / "m", lora=False)
    path = folder / "paraformer_encoder" / "paraformer-encoder.pth"
    weights = torch.load(path, weights_only=True)
    del weights["encoders.0.self_attn.linear_out.bias"]
    weights["encoders.0.extra.weight"] = torch.zeros(2)
    torch.save(weights, path)
    with pytest.raises(InputError) as error:
        load_speechllm(folder)
    message = str(error.value)
    assert "paraformer-encoder.pth" in message
    assert (
        "encoders.0.self_attn.linear_out.bias" in message and "encoders.0.extra.weight" in message
    )


def test_a_whole_funasr_paraformer_checkpoint_gives_its_encoder(tmp_path, mooer_model):
    folder = build_mooer_folder(tmp_path / "m")
    path = folder / "paraformer_encoder" / "paraformer-encoder.pth"
    weights = {f"encoder.{k}": v for k, v in torch.load(path, weights_only=True).items()}
    weights |= {
        "decoder.embed.0.weight": torch.zeros(3, 2),
        "predictor.cif_output.bias": torch.zeros(1),
    }
    torch.save({"state_dict": weights}, path)
    clip = clips([1.2])[0]
    assert torch.equal(logits(load_speechllm(folder), clip), logits(mooer_model, clip))


def test_an_adapter_for_another_llm_width_is_refused(tmp_path):
    folder = build_mooer_folder(tmp_path / "m", lora=False)
    path = folder / "asr_ast_mtl" / "adapter_project.pt"
    weights = torch.load(path, weights_only=True)
    weights["encoder_projector.linear2.weight"] = torch.zeros(48, 40)
    weights["encoder_projector.linear2.bias"] = torch.zeros(48)
    torch.save(weights, path)
    with pytest.raises(InputError, match="48-wide embeddings, the LLM takes 32"):
        load_speechllm(folder)


def test_pickles_holding_more_than_weights_are_not_unpickled(tmp_path):
    folder = build_mooer_folder(tmp_path / "m", lora=False)
    torch.save({"weights": object()}, folder / "asr_ast_mtl" / "adapter_project.pt")
    with pytest.raises(InputError, match="torch cannot read safely"):
        load_speechllm(folder)


def test_a_folder_missing_its_encoder_exits_2_with_one_line(cli, tmp_path):
    folder = build_mooer_folder(tmp_path / "m", lora=False)
    (folder / "paraformer_encoder" / "am.mvn").unlink()
    audio = tmp_path / "a.wav"
    import soundfile

    soundfile.write(audio, clips([1.0])[0], 16000)
    result = cli("transcribe", audio, "--model", folder)
    assert result.code == 2
    assert result.stderr.strip().count("\n") == 0 and "no am.mvn" in result.stderr


def tiny_folder_encoder(kind, folder):
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2Model,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperModel,
    )

    torch.manual_seed(0)
    if kind == "conformer":  # one of our CTC model folders
        from polyspeech.ctc.conformer import ConformerCTC
        from polyspeech.ctc.folder import save_conformer
        from polyspeech.text.vocab import Vocabulary
        from tests.conftest import TINY_CONFORMER

        model = ConformerCTC(TINY_CONFORMER)
        model.add_language("eng", 5)
        save_conformer(folder, model, {"eng": Vocabulary.from_texts(["abc"])})
    elif kind == "whisper":
        config = WhisperConfig(
            d_model=32,
            encoder_layers=2,
            decoder_layers=1,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            num_mel_bins=80,
            vocab_size=100,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            decoder_start_token_id=0,
        )
        WhisperModel(config).save_pretrained(folder)
        WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    else:
        config = Wav2Vec2Config(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            conv_dim=(16, 16),
            conv_kernel=(10, 3),
            conv_stride=(5, 2),
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4,
        )
        Wav2Vec2Model(config).save_pretrained(folder)


@pytest.mark.parametrize("kind", ["whisper", "wav2vec2", "conformer"])
def test_another_encoder_stands_in_by_configuration(kind, tmp_path, mooer_model):
    from polyspeech.speechllm.adapter import AdapterConfig, FrameStackAdapter
    from polyspeech.speechllm.encoders import folder_encoder
    from polyspeech.speechllm.model import SpeechLlm

    tiny_folder_encoder(kind, tmp_path / kind)
    encoder = folder_encoder(kind, tmp_path / kind)
    adapter = FrameStackAdapter(AdapterConfig(encoder.output_size, 32, stack=4, hidden_size=40))
    model = SpeechLlm(encoder, adapter, mooer_model.llm, mooer_model.tokenizer).eval()
    audio = clips([1.1, 0.6])
    embedded = model.audio_embeddings(audio)
    if kind == "whisper":  # 10 ms mel frames, halved: 1.1 s is 55 states, 0.6 s 30
        states = [55, 30]
    elif kind == "conformer":  # 10 ms fbank frames (25 ms windows), two stride-2 convolutions
        states = [((1 + (len(c) - 400) // 160 - 1) // 2 - 1) // 2 for c in audio]
    else:  # the two convolutions: kernel 10 stride 5, then kernel 3 stride 2
        states = [((len(c) - 10) // 5 + 1 - 3) // 2 + 1 for c in audio]
    assert [len(e) for e in embedded] == [n // 4 for n in states]
    save_speechllm(model, tmp_path / "ours")
    assert json.loads((tmp_path / "ours" / "polyspeech.json").read_text())["encoder"] == {
        "type": kind
    }
    back = load_speechllm(tmp_path / "ours")
    assert torch.equal(logits(model, audio[0]), logits(back, audio[0]))
    assert model.answer(audio, "asr") == back.answer(audio, "asr")


def test_bfloat16_weights_answer_too(mooer_folder):
    model = load_speechllm(mooer_folder, dtype=torch.bfloat16)
    assert model.adapter.linear1.weight.dtype == torch.bfloat16
    assert next(model.encoder.parameters()).dtype == torch.bfloat16
    answers = model.answer(clips([1.0, 1.6]), "asr")
    assert len(answers) == 2 and all(isinstance(text, str) for text, _ in answers)


def test_lora_weights_that_do_not_fit_are_named(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = build_mooer_folder(tmp_path / "m")
    path = folder / "asr_ast_mtl" / "lora_weights" / "adapter_model.safetensors"
    weights = load_file(path)
    dropped = sorted(weights)[0]
    del weights[dropped]
    weights["base_model.model.model.layers.9.mlp.up_proj.lora_A.weight"] = torch.zeros(4, 32)
    save_file(weights, path)
    with pytest.raises(InputError, match="LoRA weights do not fit the LLM") as error:
        load_speechllm(folder)
    assert dropped in str(error.value) and "layers.9.mlp.up_proj" in str(error.value)


def test_a_transcript_the_ctc_model_did_not_hear_is_flagged():
    from pathlib import Path

    from polyspeech.audio import load_audio
    from polyspeech.results import Result, Segment
    from polyspeech.speechllm.model import _cross_check

    samples = load_audio(Path(__file__).parents[2] / "examples" / "eng.flac")
    seconds = len(samples) / 16000
    said = Segment(
        0.0, seconds, "My grandmother still bakes bread every Sunday morning.", language="eng"
    )
    invented = Segment(0.0, seconds, "And one more bottle of beer. Great, we won!", language="eng")
    unknown = Segment(0.0, seconds, "Molo, unjani?", language="xho")  # a language it lacks
    _cross_check([samples], [[said, invented, unknown]], "builtin:ctc", threshold=0.1)
    assert said.agreement > 0.7 and not said.flagged
    assert invented.agreement < 0.1 and invented.flagged
    assert unknown.agreement is None and not unknown.flagged
    again = Result.from_dict(Result("", "eng", [said, invented]).to_dict()).segments
    assert [(s.agreement, s.flagged) for s in again] == [
        (said.agreement, False),
        (invented.agreement, True),
    ]


def test_an_answer_where_nothing_was_said_is_flagged_unless_translated_or_unchecked(
    mooer_model, monkeypatch
):
    silence = np.zeros(5 * 16000, np.float32)
    answered = [("我们明天去公园。", "We go to the park tomorrow.")]
    silence_answered(mooer_model, monkeypatch, answered)
    checked = mooer_model.transcribe(silence, vad_filter=False).segments
    assert [(s.agreement, s.flagged) for s in checked] == [(0.0, True)]
    for options in (
        TranscribeOptions(task="translate", vad_filter=False),
        TranscribeOptions(cross_check=None, vad_filter=False),
    ):
        silence_answered(mooer_model, monkeypatch, answered)
        segments = mooer_model.transcribe(silence, options=options).segments
        assert len(segments) == 1 and segments[0].agreement is None and not segments[0].flagged
