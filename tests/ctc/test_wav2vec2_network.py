"""polyspeech's wav2vec2 network computes what transformers' Wav2Vec2ForCTC and
Wav2Vec2ForSequenceClassification compute, on every variant of the architecture, from the same
checkpoint files (the reference is transformers itself, with random weights)."""

import json

import pytest
import torch

from polyspeech.ctc.wav2vec2 import load_wav2vec2
from polyspeech.errors import InputError

TINY = dict(
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=32,
    conv_dim=(16, 16, 16),
    conv_stride=(5, 4, 2),
    conv_kernel=(10, 8, 2),
    num_conv_pos_embedding_groups=2,
    vocab_size=9,
)
VARIANTS = {
    # facebook/mms-1b-all: pre-norm layers, per-layer norms in the encoder, biases, adapters
    "mms": dict(
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
        conv_bias=True,
        adapter_attn_dim=4,
        num_conv_pos_embeddings=8,
    ),
    # facebook/wav2vec2-base-960h: post-norm layers, a group norm on the first convolution
    "base": dict(num_conv_pos_embeddings=5),
    "tanh gelu": dict(hidden_act="gelu_new", feat_extract_activation="relu"),
}


def reference_model(architecture: str, variant: str, seed: int = 0):
    import transformers

    config = transformers.Wav2Vec2Config(**TINY, **VARIANTS[variant], num_labels=3)
    torch.manual_seed(seed)
    model = getattr(transformers, architecture)(config).eval()
    with torch.no_grad():  # every weight away from its initial value (adapters start at zero)
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.2)
    return model


def batch():
    """Two clips, the second padded by 3,000 samples, and their mask."""
    torch.manual_seed(1)
    samples = torch.randn(2, 8000)
    mask = torch.ones(2, 8000, dtype=torch.bool)
    mask[1, 5000:] = False
    samples[1, 5000:] = 0.0
    return samples, mask


def reference_outputs(model, samples, mask):
    with torch.no_grad():
        return model(samples, attention_mask=None if mask is None else mask.long()).logits


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("architecture", ["Wav2Vec2ForCTC", "Wav2Vec2ForSequenceClassification"])
@pytest.mark.parametrize("padded", [False, True], ids=["whole", "padded"])
def test_outputs_equal_transformers(tmp_path, variant, architecture, padded):
    reference = reference_model(architecture, variant)
    reference.save_pretrained(tmp_path)
    ours = load_wav2vec2(tmp_path, torch.float32, architecture=architecture)
    samples, mask = batch()
    if not padded:
        mask = None
    expected = reference_outputs(reference, samples, mask)
    with torch.no_grad():
        got = ours(samples, attention_mask=mask)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    if architecture == "Wav2Vec2ForCTC":
        lengths = torch.tensor([8000, 5000, 400, 399])
        assert torch.equal(
            ours.wav2vec2.output_lengths(lengths),
            reference._get_feat_extract_output_lengths(lengths),
        )


def test_a_changed_weight_changes_the_output(tmp_path):
    """The comparison above can fail: one weight moved is seen."""
    reference = reference_model("Wav2Vec2ForCTC", "mms")
    reference.save_pretrained(tmp_path)
    ours = load_wav2vec2(tmp_path, torch.float32)
    with torch.no_grad():
        ours.wav2vec2.encoder.layers[1].adapter_layer.linear_1.weight[0, 0] += 0.01
    samples, _ = batch()
    with torch.no_grad():
        got = ours(samples)
    assert not torch.allclose(got, reference_outputs(reference, samples, None), atol=1e-5)


@pytest.mark.parametrize("layout", ["pytorch_model.bin", "shards"])
def test_other_weight_layouts_load_the_same_model(tmp_path, layout):
    reference = reference_model("Wav2Vec2ForCTC", "mms")
    if layout == "shards":
        reference.save_pretrained(tmp_path, max_shard_size="20KB")
        assert (tmp_path / "model.safetensors.index.json").is_file()
    else:  # as checkpoints of before safetensors were saved: pickled, old weight norm names
        reference.config.save_pretrained(tmp_path)
        old = {
            name.replace("parametrizations.weight.original0", "weight_g").replace(
                "parametrizations.weight.original1", "weight_v"
            ): tensor
            for name, tensor in reference.state_dict().items()
        }
        torch.save(old, tmp_path / "pytorch_model.bin")
    assert not (tmp_path / "model.safetensors").exists()
    ours = load_wav2vec2(tmp_path, torch.float32)
    samples, _ = batch()
    with torch.no_grad():
        got = ours(samples)
    torch.testing.assert_close(got, reference_outputs(reference, samples, None))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"add_adapter": True}, "add_adapter is not supported"),
        ({"use_weighted_layer_sum": True}, "use_weighted_layer_sum is not supported"),
        ({"feat_extract_norm": "batch"}, "feat_extract_norm 'batch' is not 'group' or 'layer'"),
        ({"hidden_act": "mish"}, "hidden_act 'mish' is not supported"),
        ({"conv_kernel": [10, 3]}, "conv_dim, conv_stride and conv_kernel differ in length"),
    ],
)
def test_a_config_it_cannot_compute_is_one_line_naming_it(tmp_path, change, message):
    reference_model("Wav2Vec2ForCTC", "mms").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | change))
    with pytest.raises(InputError, match=f"config.json: {message}"):
        load_wav2vec2(tmp_path, torch.float32)


def test_a_pickle_that_is_not_weights_is_one_line_naming_it(tmp_path):
    reference_model("Wav2Vec2ForCTC", "mms").config.save_pretrained(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not a pickle")
    with pytest.raises(InputError, match=r"pytorch_model\.bin: not readable as torch weights"):
        load_wav2vec2(tmp_path, torch.float32)
