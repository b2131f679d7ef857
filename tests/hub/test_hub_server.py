"""The test Hub server answers the real ``huggingface_hub`` client the way the Hub does."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request

import huggingface_hub
import pytest
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.hub.hub_server import running_hub_server, use_hub_server

hub = pytest.fixture(running_hub_server)

CONFIG = b'{"model_type": "wav2vec2"}'
WEIGHTS = bytes(range(256)) * 32  # 8 KiB


@pytest.fixture
def cache(hub, tmp_path, monkeypatch):
    """The client's cache folder, with the client aimed at ``hub`` through its defaults."""
    folder = tmp_path / "hub-cache"
    use_hub_server(monkeypatch, hub.url, folder)
    return folder


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_download_writes_the_cache_layout_the_client_reads(hub, cache):
    sha = hub.add_repo("org/model", {"config.json": CONFIG, "model.safetensors": WEIGHTS})

    config = hf_hub_download("org/model", "config.json")
    weights = hf_hub_download("org/model", "model.safetensors")

    repo = cache / "models--org--model"
    assert config == str(repo / "snapshots" / sha / "config.json")
    assert (repo / "refs" / "main").read_text() == sha
    # Small files are named by git blob id, LFS files by sha256, as on the Hub.
    assert os.path.realpath(config) == str(repo / "blobs" / git_blob_sha1(CONFIG))
    assert os.path.realpath(weights) == str(repo / "blobs" / hashlib.sha256(WEIGHTS).hexdigest())
    assert open(weights, "rb").read() == WEIGHTS
    assert [r.method for r in hub.requests] == ["HEAD", "GET", "HEAD", "GET"]

    hub.reset_counts()
    assert hf_hub_download("org/model", "model.safetensors") == weights
    assert [r.method for r in hub.requests] == ["HEAD"]
    assert hub.file_gets() == []


def test_model_info_and_file_list_at_a_revision(hub, cache):
    first = hub.add_repo("org/model", {"config.json": CONFIG, "sub/vocab.txt": b"a b"})
    second = hub.add_repo("org/model", {"model.safetensors": WEIGHTS})

    api = HfApi()
    assert api.model_info("org/model").sha == second
    info = api.model_info("org/model", revision=first, files_metadata=True)
    assert info.sha == first
    assert {s.rfilename: s.size for s in info.siblings} == {"config.json": 26, "sub/vocab.txt": 3}
    assert huggingface_hub.list_repo_files("org/model", revision=first) == [
        "config.json",
        "sub/vocab.txt",
    ]
    (weights,) = [s for s in api.model_info("org/model", files_metadata=True).siblings if s.lfs]
    assert weights.lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    assert weights.lfs.size == len(WEIGHTS)


def test_snapshot_download_fetches_only_the_allowed_files(hub, cache):
    sha = hub.add_repo(
        "org/mms",
        {
            "config.json": CONFIG,
            "model.safetensors": WEIGHTS,
            "pytorch_model.bin": WEIGHTS,
            "adapter.fra.safetensors": b"fra" * 100,
            "adapter.deu.safetensors": b"deu" * 100,
        },
    )

    folder = snapshot_download("org/mms", allow_patterns=["*.json", "model.safetensors"])

    assert folder == str(cache / "models--org--mms" / "snapshots" / sha)
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors"]
    assert sorted(hub.file_gets()) == ["config.json", "model.safetensors"]

    hub.reset_counts()
    adapter = hf_hub_download("org/mms", "adapter.fra.safetensors", revision=sha)
    assert open(adapter, "rb").read() == b"fra" * 100
    assert hub.file_gets() == ["adapter.fra.safetensors"]


def test_a_revision_pins_the_files_served(hub, cache):
    old = hub.add_repo("org/model", {"config.json": b'{"v": 1}', "model.safetensors": WEIGHTS})
    hub.add_repo("org/model", {"config.json": b'{"v": 2}'})
    hub.set_ref("org/model", "v1.0", old)

    def config(revision: str) -> bytes:
        return open(hf_hub_download("org/model", "config.json", revision=revision), "rb").read()

    assert config("main") == b'{"v": 2}'
    assert config(old) == b'{"v": 1}'
    assert config("v1.0") == b'{"v": 1}'
    assert (cache / "models--org--model" / "refs" / "v1.0").read_text() == old
    old_folder = snapshot_download("org/model", revision=old)
    assert open(os.path.join(old_folder, "config.json"), "rb").read() == b'{"v": 1}'


def test_a_cut_download_resumes_with_a_range_request(hub, cache, monkeypatch):
    # The client keeps only whole chunks of a broken response: make chunks smaller than the cut.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    hub.add_repo("org/model", {"model.safetensors": WEIGHTS})
    hub.cut_after("model.safetensors", 3000)

    path = hf_hub_download("org/model", "model.safetensors")

    assert open(path, "rb").read() == WEIGHTS
    gets = [r for r in hub.requests if r.method == "GET"]
    assert len(gets) == 2 and gets[0].range is None
    resumed_at = int(gets[1].range.removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= 3000


def test_byte_ranges_are_answered_like_the_hub(hub):
    hub.add_repo("org/model", {"model.safetensors": WEIGHTS})
    url = f"{hub.url}/org/model/resolve/main/model.safetensors"

    def get(range_header: str):
        request = urllib.request.Request(url, headers={"Range": range_header})
        return urllib.request.urlopen(request, timeout=5)

    with get("bytes=100-199") as answer:
        assert answer.status == 206
        assert answer.headers["Content-Range"] == f"bytes 100-199/{len(WEIGHTS)}"
        assert answer.read() == WEIGHTS[100:200]
    with get("bytes=-10") as answer:
        assert answer.read() == WEIGHTS[-10:]
    with pytest.raises(urllib.error.HTTPError) as error:
        get(f"bytes={len(WEIGHTS)}-")
    assert error.value.code == 416


def test_unknown_repository(hub, cache):
    with pytest.raises(RepositoryNotFoundError) as error:
        hf_hub_download("org/missing", "config.json")
    assert type(error.value) is RepositoryNotFoundError
    assert error.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError):
        HfApi().model_info("org/missing")
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("org/missing")


def test_gated_repository_needs_a_granted_token(hub, cache):
    hub.add_repo("org/gated", {"config.json": CONFIG})
    hub.gate("org/gated", token="hf_granted")

    with pytest.raises(GatedRepoError) as error:
        hf_hub_download("org/gated", "config.json")
    assert error.value.response.status_code == 401
    with pytest.raises(GatedRepoError):
        snapshot_download("org/gated")
    with pytest.raises(GatedRepoError) as error:
        hf_hub_download("org/gated", "config.json", token="hf_other")
    assert error.value.response.status_code == 403
    assert HfApi().model_info("org/gated").gated == "manual"

    path = hf_hub_download("org/gated", "config.json", token="hf_granted")
    assert open(path, "rb").read() == CONFIG


def test_unknown_revision(hub, cache):
    hub.add_repo("org/model", {"config.json": CONFIG})

    with pytest.raises(RevisionNotFoundError) as error:
        hf_hub_download("org/model", "config.json", revision="no-such-branch")
    assert error.value.response.status_code == 404
    with pytest.raises(RevisionNotFoundError):
        snapshot_download("org/model", revision="0" * 40)


def test_unknown_file(hub, cache):
    sha = hub.add_repo("org/model", {"config.json": CONFIG})

    with pytest.raises(EntryNotFoundError) as error:
        hf_hub_download("org/model", "adapter.xyz.safetensors")
    assert isinstance(error.value, HfHubHTTPError)
    assert error.value.response.status_code == 404
    # The client remembers the absence under the commit the server named.
    assert (cache / "models--org--model" / ".no_exist" / sha / "adapter.xyz.safetensors").exists()


def test_the_cache_serves_offline_after_a_download(hub, cache, monkeypatch):
    sha = hub.add_repo("org/model", {"config.json": CONFIG, "model.safetensors": WEIGHTS})
    folder = snapshot_download("org/model")
    hub.reset_counts()

    path = hf_hub_download("org/model", "config.json", local_files_only=True)
    assert path == os.path.join(folder, "config.json")
    assert snapshot_download("org/model", local_files_only=True) == folder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hf_hub_download("org/model", "model.safetensors") == os.path.join(
        folder, "model.safetensors"
    )
    assert hf_hub_download("org/model", "config.json", revision=sha) == path
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download("org/model", "adapter.fra.safetensors")
    assert hub.requests == []
