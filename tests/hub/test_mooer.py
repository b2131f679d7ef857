"""MooER by name: a tiny release in the published layout (task folders, no LLM, the LLM's
folder a note) on a hub, assembled with the Qwen2 LLM it names, resolved by id and fetched with
it by ``polyspeech download``; and speech-LLM encoders named by hub id in polyspeech.json and in
a new speech LLM's init config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import polyspeech
from polyspeech.errors import InputError
from polyspeech.hub import resolve_model
from polyspeech.hub.mooer import llm_id
from polyspeech.speechllm.folder import load_speechllm, save_speechllm
from tests.hub.conftest import publish
from tests.hub.test_modelscope import modelscope_server
from tests.speechllm.conftest import build_mooer_folder, clips

MOOER = "mtspeech/MooER-MTL-5K"
QWEN = "Qwen/Qwen2-7B-Instruct"


def logits(model, clip):
    audio = model.audio_embeddings([clip])
    embeds, mask = model.inputs(audio, model.prompt_ids("asr"))
    with torch.no_grad():
        return model.llm(inputs_embeds=embeds, attention_mask=mask).logits


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> dict[str, Path]:
    """``reference``: a tiny MooER folder with its LLM inside (``Qwen2-tiny/``); ``mooer``: the
    same as MooER publishes it (``asr/`` and ``ast/`` beside ``asr_ast_mtl/``, the LLM's folder
    a note); ``llm``: the LLM alone, as its own repository."""
    root = tmp_path_factory.mktemp("mooer-release")
    reference = build_mooer_folder(root / "reference", seed=0)
    mooer = root / "MooER-MTL-5K"
    shutil.copytree(reference / "paraformer_encoder", mooer / "paraformer_encoder")
    shutil.copytree(reference / "asr_ast_mtl", mooer / "asr_ast_mtl")
    for scale, task in [(2.0, "asr"), (3.0, "ast")]:  # other adapters: loading one would show
        shutil.copytree(reference / "asr_ast_mtl", mooer / task)
        path = mooer / task / "adapter_project.pt"
        weights = torch.load(path, weights_only=True)
        torch.save({name: scale * value for name, value in weights.items()}, path)
    (mooer / "Qwen2-7B-Instruct").mkdir()
    (mooer / "Qwen2-7B-Instruct" / "README.md").write_text(
        "Please download Qwen2-7B-Instruct manually.\n"
    )
    (mooer / "configuration.json").write_text('{"framework": "pytorch"}')
    (mooer / "README.md").write_text("# MooER\n")
    llm = root / "Qwen2-7B-Instruct"
    shutil.copytree(reference / "Qwen2-tiny", llm)
    return {"reference": reference, "mooer": mooer, "llm": llm}


@pytest.fixture(scope="module")
def reference_model(release):
    return load_speechllm(release["reference"])


def test_a_published_release_loads_offline_from_the_hugging_face_cache(
    release, reference_model, hub_server, hub_cache, go_offline
):
    from huggingface_hub import snapshot_download

    commit = publish(hub_server, MOOER, release["mooer"])
    publish(hub_server, QWEN, release["llm"])
    for repo_id in (MOOER, QWEN):  # the cache as the client writes it
        snapshot_download(repo_id)
    storage = hub_cache / "models--mtspeech--MooER-MTL-5K"
    assert (storage / "refs" / "main").read_text() == commit
    assert (storage / "snapshots" / commit / "asr_ast_mtl" / "adapter_project.pt").is_symlink()
    go_offline()
    hub_server.reset_counts()

    model = polyspeech.load(MOOER, dtype="float32")
    clip = clips([1.4])[0]
    assert torch.equal(logits(model, clip), logits(reference_model, clip))
    assert model.multitask  # the asr_ast_mtl task folder, not asr/ or ast/
    direct = load_speechllm(MOOER)
    assert direct.source.describe() == {
        "model": MOOER,
        "repo": MOOER,
        "revision": commit,
        "hub": "huggingface",
    }
    assert hub_server.requests == []
    assert llm_id(direct.source) == QWEN  # what polyspeech download of the release adds
    assert llm_id(resolve_model(QWEN)) is None


def test_an_llm_not_in_the_cache_offline_is_one_line_naming_its_download(
    release, hub_server, hub_cache, go_offline
):
    from huggingface_hub import snapshot_download

    publish(hub_server, MOOER, release["mooer"])
    snapshot_download(MOOER)
    go_offline()
    with pytest.raises(InputError) as error:
        polyspeech.load(MOOER, dtype="float32")
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{QWEN}: not in the Hugging Face cache")
    assert message.endswith(f"polyspeech download {QWEN}")


def test_the_llm_can_be_given_and_a_single_task_release_is_not_multitask(
    release, reference_model, tmp_path
):
    clip = clips([0.9])[0]
    given = load_speechllm(release["mooer"], llm=release["llm"])
    assert torch.equal(logits(given, clip), logits(reference_model, clip))
    asr_only = tmp_path / "MooER-MTL-80K"  # as the 80K release: asr/ alone, the LLM inside
    shutil.copytree(release["reference"], asr_only)
    (asr_only / "asr_ast_mtl").rename(asr_only / "asr")
    model = load_speechllm(asr_only)
    assert not model.multitask and model.source.kind == "folder"
    assert torch.equal(logits(model, clip), logits(reference_model, clip))


def test_a_modelscope_release_takes_its_llm_from_modelscope_and_only_its_task_folder(
    release, reference_model, tmp_path, monkeypatch
):
    with modelscope_server(tmp_path, monkeypatch) as server:
        for repo_id, folder in [
            ("MooreThreadsSpeech/MooER-MTL-5K", release["mooer"]),
            ("qwen/Qwen2-7B-Instruct", release["llm"]),
        ]:
            files = [p for p in folder.rglob("*") if p.is_file()]
            server.add(repo_id, {p.relative_to(folder).as_posix(): p.read_bytes() for p in files})
        model = load_speechllm("modelscope:MooreThreadsSpeech/MooER-MTL-5K")
        fetched = server.file_gets("MooreThreadsSpeech/MooER-MTL-5K")
        llm_files = server.file_gets("qwen/Qwen2-7B-Instruct")
    clip = clips([1.1])[0]
    assert torch.equal(logits(model, clip), logits(reference_model, clip))
    assert model.source.kind == "modelscope"
    assert llm_id(model.source) == "modelscope:qwen/Qwen2-7B-Instruct"
    assert "asr_ast_mtl/adapter_project.pt" in fetched
    assert not [path for path in fetched if path.startswith(("asr/", "ast/"))]
    assert "config.json" in llm_files
    cached_llm = tmp_path / "ms-cache" / "models" / "qwen--Qwen2-7B-Instruct" / "snapshots"
    assert (cached_llm / "master" / "config.json").is_file()


@pytest.mark.parametrize("kind", ["whisper", "wav2vec2"])
def test_an_encoder_named_by_hub_id_is_saved_as_its_id_and_commit(
    kind, reference_model, hub_server, hub_cache, go_offline, tmp_path
):
    from huggingface_hub import snapshot_download

    from polyspeech.speechllm.adapter import AdapterConfig, FrameStackAdapter
    from polyspeech.speechllm.encoders import folder_encoder
    from polyspeech.speechllm.model import SpeechLlm
    from tests.speechllm.test_model import tiny_folder_encoder

    tiny_folder_encoder(kind, tmp_path / kind)
    commit = publish(hub_server, f"org/tiny-{kind}", tmp_path / kind)
    snapshot_download(f"org/tiny-{kind}")
    go_offline()
    encoder = folder_encoder(kind, f"org/tiny-{kind}")
    adapter = FrameStackAdapter(AdapterConfig(encoder.output_size, 32, stack=4, hidden_size=40))
    model = SpeechLlm(encoder, adapter, reference_model.llm, reference_model.tokenizer).eval()
    save_speechllm(model, tmp_path / "ours")
    config = json.loads((tmp_path / "ours" / "polyspeech.json").read_text())
    assert config["encoder"] == {"type": kind, "model": f"org/tiny-{kind}", "revision": commit}
    assert not (tmp_path / "ours" / "encoder").exists()  # the weights stay in the hub's cache
    back = load_speechllm(tmp_path / "ours")
    assert back.encoder.source == resolve_model(f"org/tiny-{kind}", commit)
    clip = clips([0.8])[0]
    assert torch.equal(logits(back, clip), logits(model, clip))


@pytest.mark.parametrize("kind", ["whisper", "wav2vec2"])
def test_a_new_speech_llm_config_names_its_encoder_by_hub_id(
    kind, hub_server, hub_cache, go_offline, tmp_path
):
    from huggingface_hub import snapshot_download

    from polyspeech.speechllm.build import NewSpeechLlmConfig, new_speechllm
    from tests.speechllm.test_model import tiny_folder_encoder

    tiny_folder_encoder(kind, tmp_path / kind)
    commit = publish(hub_server, f"org/tiny-{kind}", tmp_path / kind)
    snapshot_download(f"org/tiny-{kind}")
    go_offline()
    llm = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
           "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip
    init = {"encoder": f"org/tiny-{kind}@main", "encoder_type": kind, "vocab_size": 300, "llm": llm}
    (tmp_path / "init.json").write_text(json.dumps(init))
    model = new_speechllm(NewSpeechLlmConfig.from_json(tmp_path / "init.json"), ["hello", "今天"])
    assert model.encoder.source.describe() == {
        "model": f"org/tiny-{kind}@main",
        "repo": f"org/tiny-{kind}",
        "revision": commit,
        "hub": "huggingface",
    }
    save_speechllm(model, tmp_path / "new")
    config = json.loads((tmp_path / "new" / "polyspeech.json").read_text())
    assert config["encoder"] == {"type": kind, "model": f"org/tiny-{kind}", "revision": commit}


def test_download_of_a_release_fetches_its_task_folder_and_its_llm_and_says_so(
    release, reference_model, hub_server, hub_cache, go_offline, cli
):
    from tests.test_cli import decimal_size

    commit = publish(hub_server, MOOER, release["mooer"])
    publish(hub_server, QWEN, release["llm"])

    def listed(folder: Path, prefix: str = "") -> dict[str, Path]:
        return {prefix + p.relative_to(folder).as_posix(): p for p in folder.rglob("*")}

    files = listed(release["mooer"]) | listed(release["llm"], f"{QWEN}: ")
    wanted = [n for n, p in files.items() if p.is_file() and not n.startswith(("asr/", "ast/"))]
    result = cli("download", MOOER)
    assert result.code == 0, result.stderr
    *lines, total = result.stdout.splitlines()
    assert sorted(lines) == sorted(
        f"{decimal_size(files[n].stat().st_size):>10}  {n}" for n in wanted
    )
    size = decimal_size(sum(files[n].stat().st_size for n in wanted))
    folder = hub_cache / "models--mtspeech--MooER-MTL-5K" / "snapshots" / commit
    assert total == (
        f"fetched {len(wanted)} files, {size}: {MOOER} at {commit}, in {folder}, "
        f"with its LLM {QWEN}"
    )
    hub_server.reset_counts()
    again = cli("download", MOOER)
    assert again.stdout == (
        f"nothing to fetch: {MOOER} at {commit} is in the cache, in {folder}, with its LLM {QWEN}\n"
    )
    assert hub_server.file_gets() == []
    go_offline()  # what was fetched is what loading reads
    clip = clips([0.7])[0]
    assert torch.equal(
        logits(polyspeech.load(MOOER, dtype="float32"), clip), logits(reference_model, clip)
    )
