import json

import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import save_file

from polyspeech.ctc.model import CtcModel
from polyspeech.ctc.precision import resolve_precision
from polyspeech.errors import InputError
from tests.conftest import sine


def test_conformer_folder_round_trip(conformer_folder):
    folder, reference = conformer_folder
    model = CtcModel(folder)
    assert model.languages == ["cmn", "eng"]
    audio = sine(300, 1.0, 16000)
    (log_probs,) = model.log_probs([audio], "en")
    from polyspeech.audio.features import fbank

    features = torch.from_numpy(fbank(audio))[None]
    expected, _ = reference(features, torch.tensor([features.shape[1]]), "eng")
    np.testing.assert_allclose(log_probs, expected[0].detach().numpy(), atol=1e-5)
    assert model.log_probs([audio], "cmn")[0].shape[1] == len(model.vocabulary("cmn"))


def test_bfloat16_runs_and_stays_close_to_float32(conformer_folder):
    folder, _ = conformer_folder
    audio = sine(300, 1.0, 16000)
    (full,) = CtcModel(folder).log_probs([audio], "eng")
    (half,) = CtcModel(folder, precision="bfloat16").log_probs([audio], "eng")
    assert half.dtype == np.float32 and half.shape == full.shape
    np.testing.assert_allclose(np.exp(half), np.exp(full), atol=0.05)


def test_int8_quantizes_the_big_linear_layers_and_stays_close_to_float32(
    conformer_folder, tmp_path
):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    audio = sine(300, 1.0, 16000)
    for folder in (conformer_folder[0], make_mms_folder(tmp_path / "mms")):
        full = CtcModel(folder)
        int8 = CtcModel(folder, precision="int8")
        for lang in full.languages:  # adapters and heads stay float32, so switching works
            (expected,) = full.log_probs([audio], lang)
            (got,) = int8.log_probs([audio], lang)
            assert got.shape == expected.shape
            np.testing.assert_allclose(np.exp(got), np.exp(expected), atol=0.05)
        kinds = {type(m) for m in int8._network.modules()}
        assert DynamicLinear in kinds and torch.nn.Linear in kinds
        assert int8.precision == "int8" and int8.dtype == torch.float32


def test_int8_is_refused_off_the_cpu():
    with pytest.raises(InputError, match="int8 runs on the CPU only, not on cuda"):
        resolve_precision("int8", "cuda")


def test_batches_on_the_cpu_match_clips_one_at_a_time(tmp_path):
    folder = make_mms_folder(tmp_path / "mms")
    model = CtcModel(folder)
    clips = [sine(300, 1.0, 16000), sine(500, 0.6, 16000)]
    batched = model.log_probs(clips, "eng")
    for clip, got in zip(clips, batched, strict=True):
        np.testing.assert_allclose(got, model.log_probs([clip], "eng")[0], atol=1e-6)


def test_a_batch_of_several_languages_matches_one_language_at_a_time(conformer_folder, tmp_path):
    model = CtcModel(conformer_folder[0], precision="float32")
    clips = [sine(f, d, 16000) for f, d in ((300, 0.9), (500, 1.3), (700, 0.6), (900, 1.1))]
    langs = ["eng", "cmn", "eng", "cmn"]
    mixed = model.log_probs(clips, langs)
    for clip, lang, found in zip(clips, langs, mixed, strict=True):
        (alone,) = model.log_probs([clip], lang)
        assert found.shape == alone.shape == (alone.shape[0], len(model.vocabulary(lang)))
        np.testing.assert_allclose(found, alone, atol=1e-4)
    # a wav2vec2 (MMS) model runs such a batch one language at a time
    mms = CtcModel(make_mms_folder(tmp_path / "mms"), precision="float32")
    mixed = mms.log_probs(clips[:2], ["eng", "fra"])
    for clip, lang, found in zip(clips[:2], ["eng", "fra"], mixed, strict=True):
        np.testing.assert_allclose(found, mms.log_probs([clip], lang)[0], atol=1e-5)


def test_switching_languages_reads_only_adapters(conformer_folder, monkeypatch):
    folder, _ = conformer_folder
    model = CtcModel(folder, cache_size=1)
    base = model._network.blocks[0].feed_forward_1[1].weight
    reads = []
    import polyspeech.ctc.model as module

    original = module.load_language_adapter
    monkeypatch.setattr(
        module, "load_language_adapter", lambda *a: reads.append(a[2]) or original(*a)
    )
    audio = sine(300, 0.5, 16000)
    for lang in ["eng", "eng", "cmn", "eng"]:
        model.log_probs([audio], lang)
    assert reads == ["eng", "cmn", "eng"]  # cache of one: eng was evicted by cmn
    assert model._network.blocks[0].feed_forward_1[1].weight is base  # the base never reloads
    model = CtcModel(folder, cache_size=2)
    monkeypatch.setattr(
        module, "load_language_adapter", lambda *a: reads.append(a[2]) or original(*a)
    )
    reads.clear()
    for lang in ["eng", "cmn", "eng", "cmn"]:
        model.log_probs([audio], lang)
    assert reads == ["eng", "cmn"]


def test_missing_adapter_names_file_and_languages(conformer_folder):
    folder, _ = conformer_folder
    with pytest.raises(InputError) as error:
        CtcModel(folder).log_probs([sine(300, 0.5, 16000)], "fin")
    assert str(folder / "adapter.fin.safetensors") in str(error.value)
    assert "available: cmn, eng" in str(error.value)


def test_folders_that_are_not_ctc_models(tmp_path, conformer_folder):
    with pytest.raises(InputError, match=r"model folder not found"):
        CtcModel(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no config\.json"):
        CtcModel(tmp_path / "empty")
    (tmp_path / "llm").mkdir()
    (tmp_path / "llm" / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (tmp_path / "llm" / "vocab.json").write_text("{}")
    with pytest.raises(InputError, match="'qwen2' is not a CTC model"):
        CtcModel(tmp_path / "llm")
    folder, _ = conformer_folder
    (folder / "vocab.json").unlink()
    with pytest.raises(InputError, match=r"vocab\.json: missing"):
        CtcModel(folder)


def test_corrupt_weights_are_named(conformer_folder):
    folder, _ = conformer_folder
    save_file({"head.weight": torch.zeros(3, 16)}, folder / "adapter.eng.safetensors")
    named = r"adapter\.eng\.safetensors: missing 13 weight\(s\).*head\.weight has shape \(3, 16\)"
    with pytest.raises(InputError, match=named):
        CtcModel(folder).log_probs([sine(300, 0.5, 16000)], "eng")


def make_mms_folder(path, carried: str | None = "eng"):
    """A tiny wav2vec2 CTC model in the layout facebook/mms-1b-all is published in: its base
    weights carry the adapter and head of ``carried`` (mms-1b-all's: English's), or with None,
    a head of its own that fits no language's vocabulary."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    vocab = {
        "eng": {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "a": 5, "b": 6},
        "fra": {
            "<pad>": 0,
            "<s>": 1,
            "</s>": 2,
            "<unk>": 3,
            "|": 4,
            "a": 5,
            "b": 6,
            "é": 7,
            "c": 8,
        },
    }
    config = Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        # 16 channels a group (convolutions and positions): oneDNN's bf16 convolution on AMX
        # processors (torch 2.13) is wrong with 8 a group and long kernels (probed by hand:
        # relative error about 1); wav2vec2's real shapes (512 channels, 80 a group) are not
        conv_dim=(16, 16),
        conv_stride=(5, 64),
        conv_kernel=(10, 64),
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=1,
        adapter_attn_dim=4,
        vocab_size=5 if carried is None else len(vocab[carried]),
    )
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(config).eval()
    path.mkdir(parents=True)
    adapters = {}
    for lang, mapping in vocab.items():
        weights = {}
        for name, param in model._get_adapters().items():
            shape = (len(mapping), 16) if name == "lm_head.weight" else param.shape
            shape = (len(mapping),) if name == "lm_head.bias" else shape
            weights[name] = torch.randn(shape) * 0.5
        save_file(weights, path / f"adapter.{lang}.safetensors")
        adapters[lang] = weights
    if carried is not None:
        with torch.no_grad():
            for name, param in model._get_adapters().items():
                param.copy_(adapters[carried][name])
    model.save_pretrained(path)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "preprocessor_config.json").write_text(json.dumps({"do_normalize": True}))
    return path


def test_mms_layout_loads_and_switches_like_transformers(tmp_path):
    from transformers import Wav2Vec2ForCTC

    folder = make_mms_folder(tmp_path / "mms")
    model = CtcModel(folder)
    assert model.languages == ["eng", "fra"]
    assert abs(model.frame_shift - 0.02) < 1e-9
    audio = sine(300, 1.0, 16000)
    ours = {lang: model.log_probs([audio], lang)[0] for lang in ["fra", "eng", "fra"]}
    reference = Wav2Vec2ForCTC.from_pretrained(folder).eval()
    reference.load_adapter("fra")
    clip = torch.from_numpy((audio - audio.mean()) / np.sqrt(audio.var() + 1e-7))[None]
    with torch.no_grad():
        expected = reference(clip).logits.log_softmax(-1)[0].numpy()
    assert ours["fra"].shape == expected.shape == (expected.shape[0], 9)
    np.testing.assert_allclose(ours["fra"], expected, atol=1e-4)
    assert ours["eng"].shape[1] == 7


@pytest.mark.parametrize(
    ("bf16", "amx", "conformer", "wav2vec2"),
    [(True, False, "bfloat16", "int8"), (False, True, "bfloat16", "int8"),
     (False, False, "int8", "int8")],
)  # fmt: skip
def test_auto_is_bf16_for_the_conformer_where_native_else_int8(
    monkeypatch, bf16, amx, conformer, wav2vec2
):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert resolve_precision("auto", "cpu") == conformer
    assert resolve_precision("auto", "cpu", wav2vec2=True) == wav2vec2
    assert resolve_precision("float32", "cpu", wav2vec2=True) == "float32"


@pytest.mark.parametrize("native", [True, False])
def test_int8_wav2vec2_runs_its_convolutions_in_bf16_where_native(monkeypatch, tmp_path, native):
    monkeypatch.setattr("polyspeech.ctc.model.native_bf16", lambda: native)
    folder = make_mms_folder(tmp_path / "mms")
    audio = sine(300, 1.0, 16000)
    int8 = CtcModel(folder, precision="int8")
    wav2vec2 = int8._network.wav2vec2
    expected_type = torch.bfloat16 if native else torch.float32
    for module in (wav2vec2.feature_extractor, wav2vec2.encoder.pos_conv_embed):
        assert {p.dtype for p in module.parameters()} == {expected_type}
    assert {p.dtype for p in wav2vec2.encoder.layers.parameters()} == {torch.float32}
    full = CtcModel(folder)
    for lang in full.languages:
        (expected,) = full.log_probs([audio], lang)
        (got,) = int8.log_probs([audio], lang)
        assert got.dtype == np.float32
        np.testing.assert_allclose(np.exp(got), np.exp(expected), atol=0.05)


def test_unknown_dtype_is_a_one_line_error(cli, conformer_folder, tmp_path):
    folder, _ = conformer_folder
    audio = tmp_path / "a.wav"
    soundfile.write(audio, sine(300, 1.0, 16000), 16000)
    result = cli("transcribe", audio, "--model", folder, "--dtype", "float16x")
    assert result.code == 2
    assert result.stderr.strip() == (
        "polyspeech: error: dtype 'float16x': expected float32, bfloat16, int8 or auto"
    )
