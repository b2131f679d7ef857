import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

from polyspeech.ctc import wav2vec2
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
        "d": torch.tensor([-128, 0, 127], dtype=torch.int8),
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


# The conversion cache (polyspeech.ctc.converted): an int8 model's converted weights on disk.


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty polyspeech cache folder of the test's own."""
    monkeypatch.setenv("POLYSPEECH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def conversions(monkeypatch):
    """How many times the loader converted the checkpoint (rather than reading the cache)."""
    calls = []
    convert = wav2vec2._convert

    def counted(*args):
        calls.append(args[1])
        convert(*args)

    monkeypatch.setattr(wav2vec2, "_convert", counted)
    return calls


def entries(folder):
    return sorted(folder.rglob("*.safetensors")) if folder.exists() else []


def outputs(model) -> torch.Tensor:
    """The logits of a fixed clip (the layers left float in float32, as an int8 model runs),
    and every int8 layer's integers and scale."""
    clip = torch.from_numpy(sine(300, 0.5, 16000))[None]
    with torch.inference_mode():
        logits = model.float()(clip)
    int8 = [
        (module.weight().int_repr(), module.weight().q_scale())
        for module in model.modules()
        if type(module) is DynamicLinear
    ]
    assert int8, "the model has int8 layers"
    return logits, int8


def assert_same(first, second):
    (logits, int8), (other_logits, other_int8) = first, second
    assert torch.equal(logits, other_logits)  # bit for bit
    assert len(int8) == len(other_int8)
    for (values, scale), (other_values, other_scale) in zip(int8, other_int8, strict=True):
        assert torch.equal(values, other_values) and scale == other_scale


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_cached_conversion_gives_the_fresh_conversions_outputs(
    tmp_path, cache, conversions, dtype
):
    folder = make_mms_folder(tmp_path / "mms")
    fresh = outputs(load_wav2vec2(folder, dtype, quantize=True, cache=False))
    assert entries(cache) == [] and len(conversions) == 1
    assert_same(outputs(load_wav2vec2(folder, dtype, quantize=True)), fresh)  # writes the entry
    (entry,) = entries(cache)
    assert len(conversions) == 2
    assert_same(outputs(load_wav2vec2(folder, dtype, quantize=True)), fresh)  # reads it
    assert len(conversions) == 2 and entries(cache) == [entry]
    header, metadata = wav2vec2.read_header(entry)
    assert metadata["precision"] == f"int8+{str(dtype)[6:]}"
    assert {stored.dtype for stored in header} >= {torch.int8, dtype}


def test_a_ctc_model_in_int8_reads_the_cache_and_transcribes_the_same(tmp_path, cache, conversions):
    folder = make_mms_folder(tmp_path / "mms")
    audio = sine(300, 1.0, 16000)
    first = CtcModel(folder, precision="int8").log_probs([audio], "fra")[0]
    second = CtcModel(folder, precision="int8").log_probs([audio], "fra")[0]
    assert len(conversions) == 1 and len(entries(cache)) == 1
    np.testing.assert_array_equal(second, first)


def test_float_precisions_are_not_cached(tmp_path, cache, conversions):
    folder = make_mms_folder(tmp_path / "mms")
    for dtype in (torch.float32, torch.bfloat16, torch.float32):
        load_wav2vec2(folder, dtype)
    assert len(conversions) == 3 and entries(cache) == []


def test_a_changed_precision_has_an_entry_of_its_own(tmp_path, cache, conversions):
    folder = make_mms_folder(tmp_path / "mms")
    load_wav2vec2(folder, torch.bfloat16, quantize=True)
    got = outputs(load_wav2vec2(folder, torch.float32, quantize=True))
    assert len(conversions) == 2 and len(entries(cache)) == 2
    assert_same(got, outputs(load_wav2vec2(folder, torch.float32, quantize=True, cache=False)))


def test_a_changed_weight_file_is_converted_again(tmp_path, cache, conversions):
    folder = make_mms_folder(tmp_path / "mms")
    before = outputs(load_wav2vec2(folder, torch.float32, quantize=True))
    weights = load_file(folder / "model.safetensors")
    name = "wav2vec2.encoder.layers.0.feed_forward.intermediate_dense.weight"
    weights[name] = weights[name] * 2  # an int8 layer
    size = (folder / "model.safetensors").stat().st_size
    metadata = wav2vec2.read_header(folder / "model.safetensors")[1]
    save_file(weights, folder / "model.safetensors", metadata=metadata)
    assert (folder / "model.safetensors").stat().st_size == size  # told apart by its mtime
    after = outputs(load_wav2vec2(folder, torch.float32, quantize=True))
    assert len(conversions) == 2 and len(entries(cache)) == 1  # the entry replaced
    assert not torch.equal(after[0], before[0])
    assert_same(outputs(load_wav2vec2(folder, torch.float32, quantize=True)), after)
    assert len(conversions) == 2  # the new entry is read
    assert_same(after, outputs(load_wav2vec2(folder, torch.float32, quantize=True, cache=False)))


@pytest.mark.parametrize("change", ["config", "torch", "cpu"])
def test_another_config_torch_or_processor_makes_the_entry_stale(
    tmp_path, cache, conversions, monkeypatch, change
):
    folder = make_mms_folder(tmp_path / "mms")
    load_wav2vec2(folder, torch.float32, quantize=True)
    if change == "config":  # a setting that changes no weight
        config = json.loads((folder / "config.json").read_text())
        config["layerdrop"] = 0.0
        (folder / "config.json").write_text(json.dumps(config))
    elif change == "torch":
        monkeypatch.setattr(torch, "__version__", "0.0.0")
    else:
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "NEON")
    load_wav2vec2(folder, torch.float32, quantize=True)
    load_wav2vec2(folder, torch.float32, quantize=True)
    assert len(conversions) == 2 and len(entries(cache)) == 1


@pytest.mark.parametrize("damage", ["empty", "garbage", "cut", "bytes", "header"])
def test_a_damaged_entry_is_converted_again_never_an_error(
    tmp_path, cache, conversions, damage, caplog
):
    folder = make_mms_folder(tmp_path / "mms")
    fresh = outputs(load_wav2vec2(folder, torch.float32, quantize=True))
    (entry,) = entries(cache)
    data = entry.read_bytes()
    if damage == "empty":
        entry.write_bytes(b"")
    elif damage == "garbage":
        entry.write_bytes(b"\xff" * len(data))
    elif damage == "cut":  # as a full disk or a crash would leave it
        entry.write_bytes(data[: len(data) // 2])
    elif damage == "bytes":  # whole header, a tensor's bytes short
        entry.write_bytes(data[:-3])
    else:  # a valid file of other tensors
        save_file({"x": torch.zeros(3)}, entry, metadata=wav2vec2.read_header(entry)[1])
    with caplog.at_level(logging.WARNING):
        assert_same(outputs(load_wav2vec2(folder, torch.float32, quantize=True)), fresh)
    assert len(conversions) == 2
    assert str(entry) in caplog.text
    assert entry.read_bytes() == data  # rewritten whole
    load_wav2vec2(folder, torch.float32, quantize=True)
    assert len(conversions) == 2


def fail_after(monkeypatch, layers: int, error: type[BaseException]) -> None:
    """The conversion fails as it quantises layer ``layers + 1`` (part of the entry written)."""
    int8_weight = wav2vec2.int8_weight
    done = []

    def failing(weight):
        if len(done) == layers:
            raise error
        done.append(weight)
        return int8_weight(weight)

    monkeypatch.setattr(wav2vec2, "int8_weight", failing)


def test_an_interrupted_load_leaves_no_entry_and_no_temporary_file(tmp_path, cache, monkeypatch):
    folder = make_mms_folder(tmp_path / "mms")
    fail_after(monkeypatch, 3, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        load_wav2vec2(folder, torch.float32, quantize=True)
    assert [path for path in cache.rglob("*") if path.is_file()] == []


def test_an_interrupted_rewrite_keeps_the_previous_entry(tmp_path, cache, monkeypatch):
    folder = make_mms_folder(tmp_path / "mms")
    load_wav2vec2(folder, torch.bfloat16, quantize=True)
    (entry,) = entries(cache)
    before = entry.read_bytes()
    monkeypatch.setattr(torch, "__version__", "0.0.0")  # stale: it is converted again ...
    fail_after(monkeypatch, 3, OSError)
    with pytest.raises(OSError):  # ... and that fails half-way
        load_wav2vec2(folder, torch.bfloat16, quantize=True)
    assert [path for path in cache.rglob("*") if path.is_file()] == [entry]
    assert entry.read_bytes() == before


def test_a_cache_that_cannot_be_written_costs_a_warning_not_the_load(
    tmp_path, monkeypatch, conversions, caplog
):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("POLYSPEECH_CACHE", str(tmp_path / "file" / "cache"))
    folder = make_mms_folder(tmp_path / "mms")
    with caplog.at_level(logging.WARNING):
        got = outputs(load_wav2vec2(folder, torch.float32, quantize=True))
    assert "not cached" in caplog.text
    assert_same(got, outputs(load_wav2vec2(folder, torch.float32, quantize=True, cache=False)))


def hub_snapshot(tmp_path, folder, revision: str):
    """``folder``'s files laid out as huggingface_hub's cache keeps them: blobs named by their
    content's hash, a snapshot folder of links to them."""
    repo = tmp_path / "hub" / "models--org--mms"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    for path in folder.iterdir():
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / path.name).symlink_to(Path("..", "..", "blobs", blob.name))
    return repo, snapshot


def test_a_hub_models_entries_live_in_its_cache_folder_keyed_by_blob(
    tmp_path, cache, conversions, monkeypatch
):
    from huggingface_hub import scan_cache_dir
    from transformers import Wav2Vec2ForCTC

    monkeypatch.setattr(Wav2Vec2ForCTC, "from_pretrained", None)  # read one tensor at a time
    folder = make_mms_folder(tmp_path / "mms")
    repo, first = hub_snapshot(tmp_path, folder, "a" * 40)
    fresh = outputs(load_wav2vec2(first, torch.float32, quantize=True))
    blob = (first / "model.safetensors").resolve().name
    (entry,) = entries(repo / "polyspeech")
    assert entry.name.startswith(f"{blob}.Wav2Vec2ForCTC.int8+float32")
    assert entries(cache) == []
    assert_same(outputs(load_wav2vec2(first, torch.float32, quantize=True)), fresh)
    assert len(conversions) == 1
    (info,) = scan_cache_dir(tmp_path / "hub").repos  # the hub client still reads its cache
    assert info.repo_id == "org/mms"
    # another revision with other weights: an entry of its own; the old one goes with its blob
    weights = load_file(folder / "model.safetensors")
    weights["lm_head.bias"] = weights["lm_head.bias"] + 1
    save_file(weights, folder / "model.safetensors")
    shutil.rmtree(first)
    (repo / "blobs" / blob).unlink()
    _, second = hub_snapshot(tmp_path, folder, "b" * 40)
    load_wav2vec2(second, torch.float32, quantize=True)
    (newer,) = entries(repo / "polyspeech")
    assert newer != entry and len(conversions) == 2


def test_a_read_only_hub_cache_keeps_its_entries_in_polyspeechs_cache(
    tmp_path, cache, conversions, monkeypatch
):
    from polyspeech.ctc import converted

    folder = make_mms_folder(tmp_path / "mms")
    repo, snapshot = hub_snapshot(tmp_path, folder, "a" * 40)
    monkeypatch.setattr(converted.os, "access", lambda path, mode: path != repo)
    load_wav2vec2(snapshot, torch.float32, quantize=True)
    load_wav2vec2(snapshot, torch.float32, quantize=True)
    (entry,) = entries(cache)
    assert entry.name.startswith((snapshot / "model.safetensors").resolve().name)
    assert not (repo / "polyspeech").exists() and len(conversions) == 1
