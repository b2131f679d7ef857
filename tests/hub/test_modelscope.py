"""ModelScope ids through ModelScope's real client (modelscope_hub), aimed at a small server on
127.0.0.1 that answers the routes the client uses, counting the requests."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from polyspeech.errors import DependencyError, InputError
from polyspeech.hub import download, resolve_model
from polyspeech.hub.modelscope import CachedModel, cached_models, record_path

CONFIG = b'{"model_type": "wav2vec2"}'
WEIGHTS = bytes(range(256)) * 64  # 16 KiB
FRA = b"fra" * 1000
DEU = b"deu" * 1000


class Request(NamedTuple):
    route: str  # "files" (a listing), "file" (one file's bytes), "info", or "other"
    repo: str | None
    path: str | None  # the file asked for
    range: str | None


class ModelScopeServer:
    """ModelScope's model routes for repositories the test adds:

    - ``GET /api/v1/models/ORG/NAME/repo/files?Revision=R&Recursive=True``: the listing, folders
      as ``tree`` entries, files with ``Size`` and ``Sha256``
    - ``GET /api/v1/models/ORG/NAME/repo?Revision=R&FilePath=P``: the file, ``Range`` honoured
    - ``GET /api/v1/models/ORG/NAME``: the model's description

    An unknown model or revision is a 404, a private model without its token a 401. Anything
    else (the client's probe for a cloud region) is a 404, recorded as "other".
    """

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, dict[str, bytes]]] = {}
        self.tokens: dict[str, str] = {}
        self.cuts: dict[str, int] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, repo_id: str, files: dict[str, bytes], revision: str = "master") -> None:
        self.repos.setdefault(repo_id, {})[revision] = dict(files)

    def file_gets(self, repo_id: str | None = None) -> list[str]:
        with self.lock:
            return [
                r.path for r in self.requests if r.route == "file" and repo_id in (None, r.repo)
            ]

    def listings(self) -> int:
        with self.lock:
            return sum(r.route == "files" for r in self.requests)

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()


def _handler(server: ModelScopeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request a connection: a cut one needs no cleanup

        def log_message(self, *args) -> None:
            """Quiet: the test reads ``server.requests``."""

        def do_GET(self) -> None:
            split = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            parts = [unquote(p) for p in split.path.strip("/").split("/")]
            repo_id, rest = "/".join(parts[3:5]), tuple(parts[5:])
            route = {(): "info", ("repo", "files"): "files", ("repo",): "file"}.get(rest)
            if parts[:3] != ["api", "v1", "models"] or len(parts) < 5:
                route = repo_id = None
            path = query.get("FilePath")
            with server.lock:
                server.requests.append(
                    Request(route or "other", repo_id, path, self.headers.get("Range"))
                )
            revisions = server.repos.get(repo_id)
            if route is None or revisions is None:
                return self.reply(404, {"Code": 404, "Message": f"model {repo_id} not found"})
            token = server.tokens.get(repo_id)
            if token and self.headers.get("Authorization") != f"Bearer {token}":
                return self.reply(401, {"Code": 401, "Message": "login required"})
            if route == "info":
                return self.reply(200, {"Code": 200, "Data": {"Path": repo_id}})
            files = revisions.get(query.get("Revision", "master"))
            if files is None:
                return self.reply(404, {"Code": 404, "Message": "revision not found"})
            if route == "files":
                return self.reply(200, {"Code": 200, "Data": {"Files": _listing(files)}})
            if path not in files:
                return self.reply(404, {"Code": 404, "Message": f"{path} not found"})
            self.send_file(path, files[path])

        def reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def send_file(self, path: str, data: bytes) -> None:
            start = 0
            ranged = self.headers.get("Range")
            if ranged:
                start = int(ranged.removeprefix("bytes=").split("-")[0])
            self.send_response(206 if ranged else 200)
            self.send_header("Content-Length", str(len(data) - start))
            if ranged:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            with server.lock:
                cut = server.cuts.pop(path, None)
            self.wfile.write(data[start:] if cut is None else data[start:cut])

    return Handler


def _listing(files: dict[str, bytes]) -> list[dict]:
    folders = {p.rsplit("/", 1)[0] for p in files if "/" in p}
    entries = [{"Name": f.rsplit("/", 1)[-1], "Path": f, "Type": "tree"} for f in sorted(folders)]
    for path, data in sorted(files.items()):
        entries.append(
            {
                "Name": path.rsplit("/", 1)[-1],
                "Path": path,
                "Type": "blob",
                "Size": len(data),
                "Sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    return entries


@contextlib.contextmanager
def modelscope_server(tmp_path: Path, monkeypatch) -> Iterator[ModelScopeServer]:
    """The server, the client aimed at it (``MODELSCOPE_ENDPOINT``) with an empty cache
    (``MODELSCOPE_CACHE``: ``tmp_path/ms-cache``), online, no token, a listing not retried and
    a file once."""
    import modelscope_hub._download
    import modelscope_hub._legacy_api

    server = ModelScopeServer()
    server.thread.start()
    for name in ("MODELSCOPE_API_TOKEN", "MODELSCOPE_DOMAIN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", server.url)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms-cache"))
    monkeypatch.setenv("MODELSCOPE_HOME", str(tmp_path / "ms-home"))
    # the client retries a listing for 7 s and a file for 30 before it gives up
    monkeypatch.setattr(modelscope_hub._legacy_api, "REPO_TREE_PAGE_MAX_ATTEMPTS", 1)
    monkeypatch.setattr(modelscope_hub._download, "DOWNLOAD_RETRY_TIMES", 1)
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


@pytest.fixture
def modelscope(tmp_path, monkeypatch):
    with modelscope_server(tmp_path, monkeypatch) as server:
        yield server


def adapter_model(server: ModelScopeServer, repo_id: str = "org/mms") -> None:
    server.add(
        repo_id,
        {
            "config.json": CONFIG,
            "model.safetensors": WEIGHTS,
            "pytorch_model.bin": b"pickled duplicate",
            "adapter.fra.safetensors": FRA,
            "adapter.deu.safetensors": DEU,
        },
    )


def test_base_files_first_then_an_adapter_when_asked_into_the_clients_cache(
    modelscope, tmp_path, capfd
):
    adapter_model(modelscope)
    source = resolve_model("modelscope:org/mms")
    snapshot = tmp_path / "ms-cache" / "models" / "org--mms" / "snapshots" / "master"
    assert source.folder == snapshot and source.kind == "modelscope"
    assert source.describe() == {
        "model": "modelscope:org/mms",
        "repo": "org/mms",
        "revision": "master",
        "hub": "modelscope",
    }
    assert modelscope.listings() == 1
    assert sorted(modelscope.file_gets()) == ["config.json", "model.safetensors"]
    assert (snapshot / "model.safetensors").read_bytes() == WEIGHTS

    modelscope.reset()
    assert source.fetch("adapter.fra.safetensors").read_bytes() == FRA
    assert modelscope.file_gets() == ["adapter.fra.safetensors"]

    modelscope.reset()  # a second run fetches nothing: one listing, no file
    again = resolve_model("modelscope:org/mms")
    assert again.fetch("adapter.fra.safetensors") == snapshot / "adapter.fra.safetensors"
    assert modelscope.file_gets() == [] and modelscope.listings() == 1
    assert capfd.readouterr().err == ""  # no progress bars off a terminal


def test_a_revision_pins_the_files_served(modelscope):
    adapter_model(modelscope)
    modelscope.add("org/mms", {"config.json": b'{"v": 1}', "model.safetensors": b"v1"}, "v1.0")
    pinned = resolve_model("modelscope:org/mms", revision="v1.0")
    assert pinned.revision == "v1.0" and pinned.folder.name == "v1.0"
    assert (pinned.folder / "config.json").read_bytes() == b'{"v": 1}'
    assert resolve_model("modelscope:org/mms@v1.0").folder == pinned.folder
    assert (resolve_model("modelscope:org/mms").folder / "config.json").read_bytes() == CONFIG


def test_a_branch_that_moved_is_followed_to_a_file_of_the_same_size(modelscope):
    adapter_model(modelscope)
    folder = resolve_model("modelscope:org/mms").folder
    changed = bytes(reversed(WEIGHTS))  # retrained weights: the same size, other bytes
    modelscope.repos["org/mms"]["master"]["model.safetensors"] = changed
    modelscope.reset()
    assert (
        resolve_model("modelscope:org/mms").folder / "model.safetensors"
    ).read_bytes() == changed
    assert modelscope.file_gets() == ["model.safetensors"]
    record_path(folder).unlink()  # a cache another program filled: checked by content, kept
    modelscope.reset()
    resolve_model("modelscope:org/mms")
    assert modelscope.file_gets() == []
    record = json.loads(record_path(folder).read_text())
    assert record["model.safetensors"] == hashlib.sha256(changed).hexdigest()


def test_download_fetches_ahead_what_offline_use_reads(modelscope, monkeypatch):
    adapter_model(modelscope)
    source, fetched = download("modelscope:org/mms", ["fr"])
    assert sorted(fetched) == [
        ("adapter.fra.safetensors", len(FRA)),
        ("config.json", len(CONFIG)),
        ("model.safetensors", len(WEIGHTS)),
    ]
    modelscope.reset()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = resolve_model("modelscope:org/mms")
    assert offline.folder == source.folder and offline.revision == "master"
    assert offline.fetch("adapter.fra.safetensors").read_bytes() == FRA
    assert modelscope.requests == []
    with pytest.raises(InputError) as error:
        offline.fetch("adapter.deu.safetensors")
    message = str(error.value)
    assert "\n" not in message and "adapter.deu.safetensors" in message
    assert "polyspeech download modelscope:org/mms --lang deu" in message


def test_offline_and_not_cached_names_the_download_command(modelscope, monkeypatch):
    adapter_model(modelscope)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError) as error:
        resolve_model("modelscope:org/mms")
    message = str(error.value)
    assert "\n" not in message and "not in the ModelScope cache" in message
    assert message.endswith("polyspeech download modelscope:org/mms")
    assert modelscope.requests == []


def test_out_of_reach_the_cache_answers_and_says_so_when_it_cannot(modelscope, monkeypatch):
    adapter_model(modelscope)
    cached = resolve_model("modelscope:org/mms")
    modelscope.httpd.shutdown()  # the server goes away: nothing listens on its port
    modelscope.httpd.server_close()
    assert resolve_model("modelscope:org/mms").folder == cached.folder
    with pytest.raises(InputError, match=f"ModelScope cannot be reached at {modelscope.url}"):
        resolve_model("modelscope:org/other")
    with pytest.raises(InputError) as error:
        cached.fetch("adapter.deu.safetensors")
    assert "--lang deu" in str(error.value) and "cannot be reached" in str(error.value)


def test_unknown_ids_revisions_files_and_private_models_are_one_line_each(modelscope):
    adapter_model(modelscope)
    modelscope.add("org/private", {"config.json": CONFIG})
    modelscope.tokens["org/private"] = "ms-secret"
    modelscope.add("org/dataset-like", {"README.md": b"# not a model"})
    cases = {
        "modelscope:org/missing": "no such model on ModelScope",
        "modelscope:org/mms@v9": "org/mms has no revision 'v9'",
        "modelscope:org/private": "ModelScope refused access",
        "modelscope:org/dataset-like": "not a model polyspeech can load",
    }
    for name, expected in cases.items():
        with pytest.raises(InputError) as error:
            resolve_model(name)
        assert expected in str(error.value) and "\n" not in str(error.value), name
    with pytest.raises(InputError, match=r"the repository has no adapter\.xyz\.safetensors"):
        resolve_model("modelscope:org/mms").fetch("adapter.xyz.safetensors")


def test_a_token_opens_a_private_model(modelscope, monkeypatch):
    modelscope.add("org/private", {"config.json": CONFIG})
    modelscope.tokens["org/private"] = "ms-secret"
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms-secret")
    assert (resolve_model("modelscope:org/private").folder / "config.json").is_file()


def test_a_cut_download_resumes_where_it_stopped(modelscope):
    adapter_model(modelscope)
    modelscope.cuts["model.safetensors"] = 5000
    source = resolve_model("modelscope:org/mms")
    assert (source.folder / "model.safetensors").read_bytes() == WEIGHTS
    ranges = [r.range for r in modelscope.requests if r.path == "model.safetensors"]
    assert ranges == [None, "bytes=5000-"]


def test_without_the_modelscope_package_the_error_says_what_to_install(modelscope, monkeypatch):
    monkeypatch.setitem(sys.modules, "modelscope_hub", None)
    with pytest.raises(DependencyError, match=r"pip install 'polyspeech\[modelscope\]'"):
        resolve_model("modelscope:org/mms")


def test_the_cache_of_an_older_client_is_read_in_place(modelscope, tmp_path, monkeypatch):
    """Clients before 1.38 kept models/ORG/NAME (a dot written ___); the client reuses it."""
    legacy = tmp_path / "ms-cache" / "models" / "org" / "mms-v1___0"
    legacy.mkdir(parents=True)
    (legacy / "config.json").write_bytes(CONFIG)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model("modelscope:org/mms-v1.0").folder == Path(legacy)


def test_cached_models_lists_each_revision_from_the_folders_alone(
    modelscope, tmp_path, monkeypatch
):
    adapter_model(modelscope)
    modelscope.add("org/mms", {"config.json": b'{"v": 1}'}, "v1.0")
    resolve_model("modelscope:org/mms").fetch("adapter.fra.safetensors")
    resolve_model("modelscope:org/mms@v1.0")
    cache = tmp_path / "ms-cache"
    legacy = cache / "hub" / "models" / "org" / "old-v1___0"  # an older client's default cache
    legacy.mkdir(parents=True)
    (legacy / "config.json").write_bytes(CONFIG)
    (legacy / "adapter.deu.safetensors").write_bytes(DEU)
    (cache / "models" / "org" / "empty").mkdir(parents=True)  # the client takes it for absent
    monkeypatch.setitem(sys.modules, "modelscope_hub", None)  # nor is the client needed
    snapshots = cache / "models" / "org--mms" / "snapshots"
    assert cached_models() == [
        CachedModel(
            "org/mms", "master", snapshots / "master", len(CONFIG + WEIGHTS + FRA), ("fra",)
        ),
        CachedModel("org/mms", "v1.0", snapshots / "v1.0", len(b'{"v": 1}'), ()),
        CachedModel("org/old-v1.0", None, legacy, len(CONFIG + DEU), ("deu",)),
    ]
    assert cached_models()[0].name == "modelscope:org/mms"
    assert cached_models(tmp_path / "no-cache") == []
