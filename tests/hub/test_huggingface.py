"""Published models by Hugging Face Hub id: the real huggingface_hub client against a stand-in
Hub on 127.0.0.1 (tests/hub/hub_server.py), counting what it is asked, and against the cache it
leaves, offline. Every model is a tiny one of its family, made in the test."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from huggingface_hub import _tree_cache, constants

import polyspeech
from polyspeech.ctc.model import CtcModel
from polyspeech.ctc.train import _conformer_folder
from polyspeech.hub import download, resolve_model
from polyspeech.hub.huggingface import base_files, is_loadable
from polyspeech.lid.model import LidModel
from tests.conftest import one_line_error, sine
from tests.ctc.test_model import make_mms_folder
from tests.hub.conftest import publish
from tests.lid.test_lid import make_mms_lid_folder
from tests.tts.test_speak import make_vits_folder

MMS = "facebook/mms-tiny"
CLIP = sine(300, 1.0, 16000)


@pytest.fixture
def mms(hub_server, hub_cache, tmp_path):
    """A tiny MMS recogniser (adapters eng and fra, its base weights neither's) published as
    ``MMS``: its folder and commit."""
    folder = make_mms_folder(tmp_path / "mms", carried=None)
    return folder, publish(hub_server, MMS, folder)


def test_base_files_are_what_a_loader_reads_in_one_weight_format():
    listing = frozenset(
        [".gitattributes", "README.md", "config.json", "vocab.json", "model.safetensors",
         "pytorch_model.bin", "training_args.bin", "tf_model.h5", "flax_model.msgpack",
         "onnx/model.onnx", "adapter.fra.safetensors", "adapter.eng.safetensors",
         "adapter.eng.bin", "preprocessor_config.json", "tokenizer_config.json",
         "special_tokens_map.json", "vocabs/eng.txt", "vocabs/fra.txt", "create_vocab.py",
         "download_vocabs.sh"]
    )  # fmt: skip
    # mms-1b-all's layout: no vocabs/, no scripts, no adapter, no second weight format
    assert base_files(listing) == [
        "README.md", "config.json", "model.safetensors", "preprocessor_config.json",
        "special_tokens_map.json", "tokenizer_config.json", "vocab.json",
    ]  # fmt: skip
    assert base_files(frozenset(["config.json", "pytorch_model.bin"])) == [
        "config.json",
        "pytorch_model.bin",
    ]
    whisper = frozenset(
        ["config.json", "preprocessor_config.json", "merges.txt", "normalizer.json",
         "model.safetensors", "model.fp32-00001-of-00002.safetensors",
         "model.fp32-00002-of-00002.safetensors", "pytorch_model.bin", "flax_model.msgpack"]
    )  # fmt: skip
    assert [f for f in base_files(whisper) if "model" in f] == ["model.safetensors"]
    qwen = frozenset(
        ["config.json", "tokenizer.json", "model.safetensors.index.json", "LICENSE",
         "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    )  # fmt: skip
    assert base_files(qwen) == sorted(qwen)  # shards where there is no model.safetensors
    mooer = frozenset(
        ["README.md", "configuration.json", "assets/framework.png", "assets/results.png",
         "paraformer_encoder/am.mvn", "paraformer_encoder/paraformer-encoder.pth",
         "asr/adapter_project.pt", "asr/lora_weights/adapter_model.bin",
         "asr_ast_mtl/adapter_project.pt", "asr_ast_mtl/lora_weights/adapter_config.json",
         "asr_ast_mtl/lora_weights/adapter_model.bin", "Qwen2-7B-Instruct/README.md"]
    )  # fmt: skip
    assert is_loadable(mooer) and is_loadable(listing)
    # the task MooER loads only, and no assets/
    assert base_files(mooer) == [
        "Qwen2-7B-Instruct/README.md", "README.md", "asr_ast_mtl/adapter_project.pt",
        "asr_ast_mtl/lora_weights/adapter_config.json",
        "asr_ast_mtl/lora_weights/adapter_model.bin", "configuration.json",
        "paraformer_encoder/am.mvn", "paraformer_encoder/paraformer-encoder.pth",
    ]  # fmt: skip
    ours = frozenset(
        ["polyspeech.json", "adapter.safetensors", "encoder/config.json",
         "encoder/model.safetensors", "llm/config.json", "llm/tokenizer.json",
         "llm/model.safetensors", "lora/adapter_config.json", "lora/adapter_model.safetensors",
         "samples/a.wav"]
    )  # fmt: skip
    assert base_files(ours) == sorted(ours - {"samples/a.wav"})
    assert not is_loadable(frozenset(["README.md", "data/train.csv"]))


def test_an_mms_id_fetches_the_base_then_only_the_adapter_of_the_language_used(
    mms, hub_server, hub_cache
):
    folder, sha = mms
    model = CtcModel(MMS)
    base = sorted(p.name for p in folder.iterdir() if not p.name.startswith("adapter."))
    assert sorted(hub_server.file_gets()) == base
    assert model.source.describe() == {
        "model": MMS,
        "repo": MMS,
        "revision": sha,
        "hub": "huggingface",
    }
    assert model.languages == ["eng", "fra"]  # from the repository's listing: none fetched yet

    hub_server.reset_counts()
    got = model.log_probs([CLIP], "fra")[0]
    assert hub_server.file_gets() == ["adapter.fra.safetensors"]
    np.testing.assert_array_equal(got, CtcModel(folder).log_probs([CLIP], "fra")[0])

    # the cache as the client writes it: refs, snapshots linking to blobs, the tree listing
    repo = hub_cache / "models--facebook--mms-tiny"
    assert (repo / "refs" / "main").read_text() == sha
    snapshot = repo / "snapshots" / sha
    assert model.folder == snapshot
    assert sorted(p.name for p in snapshot.iterdir()) == sorted([*base, "adapter.fra.safetensors"])
    assert all(p.is_symlink() and p.resolve().parent == repo / "blobs" for p in snapshot.iterdir())
    assert (repo / "trees" / f"{sha}.json").is_file()

    hub_server.reset_counts()
    again = CtcModel(MMS)
    again.log_probs([CLIP], "fra")
    assert hub_server.file_gets() == []  # a second run fetches nothing
    assert [r.path for r in hub_server.requests] == [f"/api/models/{MMS}/revision/main"]


def test_offline_the_cache_answers_and_a_missing_adapter_names_the_download_command(
    mms, hub_server, hub_cache, go_offline, monkeypatch
):
    _, sha = mms
    expected = CtcModel(MMS).log_probs([CLIP], "fra")[0]
    go_offline()
    hub_server.reset_counts()
    model = CtcModel(MMS)
    assert model.source.revision == sha and model.languages == ["eng", "fra"]
    np.testing.assert_array_equal(model.log_probs([CLIP], "fra")[0], expected)
    message = one_line_error(model.log_probs, [CLIP], "eng")
    assert message == (
        f"{MMS}: adapter.eng.safetensors is not in the Hugging Face cache and the Hub is offline "
        f"(HF_HUB_OFFLINE); fetch it with network access: polyspeech download {MMS} --lang eng"
    )
    assert hub_server.requests == []

    # a cache another program filled keeps no listing: the languages are those of vocab.json
    for listing in (hub_cache / "models--facebook--mms-tiny" / "trees").iterdir():
        listing.unlink()
    monkeypatch.setattr(_tree_cache, "_IN_MEMORY_TREE_CACHE", {})  # the client's copy of it
    model = CtcModel(MMS)
    assert model.source.listing is None and model.languages == ["eng", "fra"]


def test_offline_a_model_never_fetched_is_one_line_naming_the_command(hub_cache, go_offline):
    go_offline()
    message = one_line_error(resolve_model, "org/never-fetched")
    assert "org/never-fetched: not in the Hugging Face cache" in message
    assert message.endswith("fetch it with network access: polyspeech download org/never-fetched")


def test_without_a_network_the_cache_answers_and_the_rest_is_one_line(mms, hub_server):
    _, sha = mms
    CtcModel(MMS).log_probs([CLIP], "fra")
    hub_server.stop()  # connections refused from now on
    model = CtcModel(MMS)
    assert model.source.revision == sha
    model.log_probs([CLIP], "fra")
    message = one_line_error(model.log_probs, [CLIP], "eng")
    assert "adapter.eng.safetensors is not in the Hugging Face cache and the Hub cannot be " in (
        message
    )
    assert message.endswith(f"polyspeech download {MMS} --lang eng")
    message = one_line_error(resolve_model, "org/elsewhere")
    assert "org/elsewhere: not in the Hugging Face cache" in message and "cannot be reached" in (
        message
    )


def test_a_revision_pins_the_files_served(mms, hub_server, hub_cache, go_offline):
    _, first = mms
    hub_server.set_ref(MMS, "v1.0", first)
    second = hub_server.add_repo(MMS, {"preprocessor_config.json": b'{"do_normalize": false}'})

    def normalizes(source) -> bool:
        return json.loads((source.folder / "preprocessor_config.json").read_text())["do_normalize"]

    latest = resolve_model(MMS)
    assert latest.revision == second and not normalizes(latest)
    for pinned in (resolve_model(f"{MMS}@v1.0"), resolve_model(MMS, revision=first)):
        assert pinned.revision == first and normalizes(pinned)
    assert resolve_model(MMS, revision="v1.0").name == f"{MMS}@v1.0"  # as results name it
    hub_server.reset_counts()
    assert resolve_model(f"{MMS}@{first}").revision == first
    assert hub_server.requests == []  # a commit never changes: its cached files answer
    go_offline()
    assert resolve_model(f"{MMS}@v1.0").revision == first  # through refs/v1.0
    assert resolve_model(MMS).revision == second


def test_a_download_cut_half_way_resumes_with_a_range_request(
    mms, hub_server, hub_cache, monkeypatch
):
    folder, _ = mms
    weights = (folder / "model.safetensors").read_bytes()
    half = len(weights) // 2
    # the client keeps whole chunks of a cut response: chunks smaller than the cut
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    hub_server.cut_after("model.safetensors", half)
    source = resolve_model(MMS)
    ranges = [r.range for r in hub_server.requests if r.path.endswith("/model.safetensors")]
    assert ranges[-1] == f"bytes={half // 1024 * 1024}-", ranges
    assert (source.folder / "model.safetensors").read_bytes() == weights
    blobs = hub_cache / "models--facebook--mms-tiny" / "blobs"
    assert not [p for p in blobs.iterdir() if p.name.endswith(".incomplete")]


def test_mistakes_are_one_line_each(mms, hub_server, hub_cache, monkeypatch):
    folder, _ = mms
    assert "org/missing: no such model on the Hugging Face Hub" in one_line_error(
        resolve_model, "org/missing"
    )
    assert f"{MMS}@nope: {MMS} has no revision 'nope'" in one_line_error(
        resolve_model, f"{MMS}@nope"
    )
    assert "two revisions" in one_line_error(resolve_model, f"{MMS}@a", revision="b")
    assert "model folder not found" in one_line_error(resolve_model, "a/b/c")
    hub_server.add_repo("org/data", {"README.md": b"# data", "train.csv": b"a,b\n"})
    hub_server.reset_counts()
    assert one_line_error(resolve_model, "org/data") == (
        "org/data: not a model polyspeech can load (no config.json, and not MooER's release layout)"
    )
    assert hub_server.file_gets() == []  # told from its listing, nothing downloaded

    publish(hub_server, "org/gated", folder)
    hub_server.gate("org/gated", token="hf_granted")
    assert "org/gated: a gated model" in one_line_error(resolve_model, "org/gated")
    monkeypatch.setenv("HF_TOKEN", "hf_granted")
    assert resolve_model("org/gated").repo_id == "org/gated"


def test_download_fetches_ahead_and_says_what_it_fetched(mms, hub_server, hub_cache, capfd):
    folder, sha = mms
    source, fetched = download(MMS, ["fr"])
    expected = sorted(
        (p.name, p.stat().st_size)
        for p in folder.iterdir()
        if not p.name.startswith("adapter.") or p.name == "adapter.fra.safetensors"
    )
    assert sorted(fetched) == expected and source.revision == sha
    assert capfd.readouterr().err == ""  # no progress bar off a terminal
    hub_server.reset_counts()
    assert download(MMS, ["fra"])[1] == []
    assert hub_server.file_gets() == []
    assert "no adapter.deu.safetensors" in one_line_error(download, MMS, ["deu"])
    assert "takes a Hub id" in one_line_error(download, str(folder))


def test_a_local_folder_wins_over_an_id_of_the_same_spelling(
    hub_server, hub_cache, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    make_mms_folder(tmp_path / "facebook" / "mms-tiny")
    source = CtcModel(MMS).source
    assert source.kind == "folder" and source.revision is None
    assert hub_server.requests == []


def test_our_conformer_by_id_through_load_and_as_a_training_base(
    conformer_folder, hub_server, hub_cache
):
    folder, _ = conformer_folder
    sha = publish(hub_server, "org/conformer", folder)
    model = polyspeech.load("org/conformer", dtype="float32")
    assert model.source.revision == sha and model.languages == ["cmn", "eng"]
    hub_server.reset_counts()
    got = model.log_probs([CLIP], "eng")[0]
    assert hub_server.file_gets() == ["adapter.eng.safetensors"]
    np.testing.assert_array_equal(got, CtcModel(folder).log_probs([CLIP], "eng")[0])
    base, _ = _conformer_folder("org/conformer")  # training keeps every old adapter
    assert (base / "adapter.cmn.safetensors").is_file()


def test_an_mms_lid_id_gives_the_folders_probabilities(hub_server, hub_cache, tmp_path):
    folder, _ = make_mms_lid_folder(tmp_path / "mms-lid")
    publish(hub_server, "facebook/mms-lid-tiny", folder)
    clip = sine(220, 1.5, 16000)
    got = LidModel("facebook/mms-lid-tiny", precision="float32").probabilities([clip])
    expected = LidModel(folder, precision="float32").probabilities([clip])
    np.testing.assert_array_equal(got, expected)


def test_an_mms_tts_id_speaks_as_its_folder_does(hub_server, hub_cache, tmp_path):
    folder = make_vits_folder(tmp_path / "mms-tts", uroman=False)
    sha = publish(hub_server, "facebook/mms-tts-tiny", folder)
    spoken = polyspeech.speak("hello world", model="facebook/mms-tts-tiny")
    np.testing.assert_array_equal(spoken, polyspeech.speak("hello world", model=folder))
    assert resolve_model("facebook/mms-tts-tiny").revision == sha
    assert os.path.islink(resolve_model("facebook/mms-tts-tiny").folder / "config.json")


def test_an_mms_tts_id_with_a_script_speaks_its_language(hub_server, hub_cache, tmp_path):
    voice = "facebook/mms-tts-azj-script_latin"
    folder = make_vits_folder(tmp_path / "azj", uroman=False, language="azj-script_latin")
    publish(hub_server, voice, folder)
    spoken = polyspeech.speak("salam dunya", model=voice)
    np.testing.assert_array_equal(polyspeech.speak("salam dunya", "azj", voice), spoken)
    assert "this voice speaks azj-script_latin, not tur" in one_line_error(
        polyspeech.speak, "salam dunya", "tur", voice
    )


def test_results_name_the_model_they_came_from(mms, hub_server, hub_cache):
    _, sha = mms
    result = CtcModel(MMS).transcribe(CLIP, language="fra", vad_filter=False, lm="none")
    assert result.source == {"model": MMS, "repo": MMS, "revision": sha, "hub": "huggingface"}
    llm = polyspeech.load("builtin:speechllm", dtype="float32")
    assert llm.transcribe(CLIP, language="eng", vad_filter=False).source == {
        "model": "builtin:speechllm",
        "repo": None,
        "revision": None,
        "hub": "builtin",
    }
