import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from polyspeech.ctc.model import CtcModel
from polyspeech.ctc.wav2vec2 import load_wav2vec2, read_safetensors
from polyspeech.errors import InputError
from tests.conftest import sine
from tests.ctc.test_model import make_mms_folder


def test_read_safetensors_gives_what_safetensors_gives(tmp_path):
    tensors = {
        "a": torch.randn(3, 4),
        "b": torch.arange(5, dtype=torch.int64),
        "c": torch.randn(2).to(torch.bfloat16),
        "empty": torch.zeros(0, 3),
    }
    save_file(tensors, tmp_path / "t.safetensors")
    read = dict(read_safetensors(tmp_path / "t.safetensors"))
    assert read.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert read[name].dtype == tensor.dtype and torch.equal(read[name], tensor)


def test_a_file_that_is_not_safetensors_is_named(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00nope!")
    with pytest.raises(InputError, match=r"bad\.safetensors: not a safetensors file"):
        list(read_safetensors(tmp_path / "bad.safetensors"))


def test_old_weight_norm_names_load_to_the_same_model(tmp_path):
    folder = make_mms_folder(tmp_path / "mms")
    expected = CtcModel(folder).log_probs([sine(300, 1.0, 16000)], "eng")[0]
    weights = load_file(folder / "model.safetensors")
    renamed = {
        name.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): tensor
        for name, tensor in weights.items()
    }
    assert renamed.keys() != weights.keys()
    save_file(renamed, folder / "model.safetensors")
    got = CtcModel(folder).log_probs([sine(300, 1.0, 16000)], "eng")[0]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("change", ["drop", "add", "reshape"])
def test_weights_that_do_not_fit_are_errors_naming_them(tmp_path, change):
    folder = make_mms_folder(tmp_path / "mms")
    weights = load_file(folder / "model.safetensors")
    if change == "drop":
        del weights["lm_head.bias"]
        message = r"missing weights lm_head\.bias"
    elif change == "add":
        weights["extra.weight"] = torch.zeros(2)
        message = r"unexpected weight extra\.weight"
    else:
        weights["lm_head.bias"] = torch.zeros(3)
        message = r"lm_head\.bias has shape \(3,\), the model needs \(7,\)"
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(InputError, match=message):
        load_wav2vec2(folder, torch.float32)
