"""A stand-in for the Hugging Face Hub on 127.0.0.1, for tests that drive the real client.

It answers the routes ``huggingface_hub`` (2.4) uses to fetch model files, over plain HTTP with
no Xet headers, so the client takes its ordinary HTTP download path:

- ``HEAD``/``GET /{org}/{name}/resolve/{revision}/{path}``: ``X-Repo-Commit``, ``ETag`` (git blob
  sha1; sha256 for LFS-sized files, which also get ``X-Linked-Etag``/``X-Linked-Size``),
  ``Content-Length``, and ``Range: bytes=A-[B]`` answered with 206 and ``Content-Range``.
- ``GET /api/models/{org}/{name}[/revision/{revision}]``: model info with ``sha`` and
  ``siblings`` (sizes, blob ids and LFS entries with ``?blobs=true``).
- ``GET /api/models/{org}/{name}/tree/{revision}[/{path}][?recursive=true]``: the tree listing
  ``snapshot_download`` and ``list_repo_files`` read (one page, no pagination).
- Errors as the Hub gives them, with ``X-Error-Code``/``X-Error-Message`` headers (and a JSON
  ``{"error": ...}`` body on GET): unknown repository 401 ``RepoNotFound``; a gated repository's
  files without a token 401 ``GatedRepo``, with a token not granted 403 ``GatedRepo`` (its
  metadata and tree stay public, as on the Hub); unknown revision 404 ``RevisionNotFound``;
  unknown file 404 ``EntryNotFound`` (with ``X-Repo-Commit``). The client turns these into
  ``RepositoryNotFoundError``, ``GatedRepoError``, ``RevisionNotFoundError`` and
  ``EntryNotFoundError``.

Repository ids are ``ORG/NAME``. API for tests::

    with HubServer() as server:    # or hub_server = pytest.fixture(running_hub_server)
        sha1 = server.add_repo("org/m", {"config.json": b"{}", "model.safetensors": Path(...)})
        sha2 = server.add_repo("org/m", {"config.json": b'{"v": 2}'})   # new commit on main
        server.add_repo("org/m", {"old.bin": None})                    # None deletes a file
        server.set_ref("org/m", "v1.0", sha1)                           # a tag or branch name
        server.gate("org/m", token="hf_granted")   # files need "Authorization: Bearer hf_granted"
        server.url                                  # "http://127.0.0.1:PORT"
        server.requests   # [Request(method, path, range), ...], path as sent (quoted), no query
        server.file_gets()   # repo paths of the files fetched with GET /resolve/, in order
        server.reset_counts()
        server.cut_after("model.safetensors", 4096)  # next GET of it sends 4096 body bytes, closes

``add_repo(repo_id, files, revision_name="main") -> commit sha``: the new commit holds the files
``revision_name`` pointed at before (none for a new name) updated by ``files`` (bytes, a path to
read, or None to delete), and ``revision_name`` moves to it.

``use_hub_server(monkeypatch, url, cache_dir)`` aims the already imported client at the server
(``HF_ENDPOINT`` and the constants read at import, the module-level ``HfApi``), uses ``cache_dir``
as ``HF_HUB_CACHE``, online, with no token, and settles the client's once-a-process fetch of
``{ENDPOINT}/api/agent-harnesses`` so it never leaves the machine nor shows in the counts.
Offline mode afterwards needs both ``monkeypatch.setenv("HF_HUB_OFFLINE", "1")`` and
``monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)``.

Resume: the client keeps only whole ``huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE`` chunks (10
MiB) of a cut response and retries in the same call with ``Range: bytes=N-`` after a one-second
pause; a test of a small file lowers that constant below the cut. A download interrupted in an
earlier process starts over (2.4 writes each attempt to its own temporary file).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

# Files the Hub stores through LFS: weight formats by extension, anything else from 10 MiB.
_LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".h5", ".msgpack")
_LFS_MIN_SIZE = 10 * 1024 * 1024
_FIXED_DATE = "2024-01-01T00:00:00.000Z"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class Request(NamedTuple):
    method: str
    path: str
    range: str | None


class _Blob(NamedTuple):
    data: bytes
    etag: str  # what the client names the blob after: git sha1, or sha256 for LFS
    oid: str  # git blob id in the tree listing (of the pointer file for LFS)
    lfs: dict | None


class _Reply(Exception):
    """An HTTP error answer, raised out of route handling."""

    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _blob(path: str, data: bytes) -> _Blob:
    if not (path.endswith(_LFS_SUFFIXES) or len(data) >= _LFS_MIN_SIZE):
        sha1 = _git_sha1(data)
        return _Blob(data, sha1, sha1, None)
    sha256 = hashlib.sha256(data).hexdigest()
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n"
    pointer_bytes = pointer.encode()
    lfs = {"oid": sha256, "size": len(data), "pointerSize": len(pointer_bytes)}
    return _Blob(data, sha256, _git_sha1(pointer_bytes), lfs)


class _Repo:
    def __init__(self) -> None:
        self.commits: dict[str, dict[str, _Blob]] = {}
        self.refs: dict[str, str] = {}
        self.gate_token: str | None = None


class HubServer:
    """The Hub's file routes for repositories added by the test; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._repos: dict[str, _Repo] = {}
        self._cuts: dict[str, int] = {}
        self.requests: list[Request] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> HubServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- content --------------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes | os.PathLike | None],
        revision_name: str = "main",
    ) -> str:
        if repo_id.count("/") != 1:
            raise ValueError(f"repo id {repo_id!r} is not ORG/NAME")
        with self._lock:
            repo = self._repos.setdefault(repo_id, _Repo())
            parent = repo.refs.get(revision_name)
            tree = dict(repo.commits[parent]) if parent else {}
            for path, content in files.items():
                if content is None:
                    tree.pop(path, None)
                else:
                    data = content if isinstance(content, bytes) else Path(content).read_bytes()
                    tree[path] = _blob(path, data)
            listing = "".join(f"{path} {tree[path].etag}\n" for path in sorted(tree))
            sha = hashlib.sha1(f"{repo_id}\n{parent}\n{listing}".encode()).hexdigest()
            repo.commits[sha] = tree
            repo.refs[revision_name] = sha
            return sha

    def set_ref(self, repo_id: str, name: str, sha: str) -> None:
        with self._lock:
            repo = self._repos[repo_id]
            if sha not in repo.commits:
                raise ValueError(f"{repo_id} has no commit {sha}")
            repo.refs[name] = sha

    def gate(self, repo_id: str, token: str = "hf_granted") -> None:
        with self._lock:
            self._repos[repo_id].gate_token = token

    def cut_after(self, path_suffix: str, nbytes: int) -> None:
        with self._lock:
            self._cuts[path_suffix] = nbytes

    # -- what the client asked ------------------------------------------------------------------

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()

    def file_gets(self) -> list[str]:
        with self._lock:
            return [
                unquote(path.split("/", 5)[5])
                for method, path, _ in self.requests
                if method == "GET" and path.split("/")[3:4] == ["resolve"]
            ]

    # -- routing (called from the handler threads) ----------------------------------------------

    def _record(self, method: str, path: str, range_header: str | None) -> None:
        with self._lock:
            self.requests.append(Request(method, path, range_header))

    def _take_cut(self, filename: str) -> int | None:
        with self._lock:
            for suffix in self._cuts:
                if filename.endswith(suffix):
                    return self._cuts.pop(suffix)
        return None

    def _repo(self, repo_id: str) -> _Repo:
        repo = self._repos.get(repo_id)
        if repo is None:
            raise _Reply(401, "RepoNotFound", "Repository not found")
        return repo

    def _commit(self, repo: _Repo, revision: str) -> str:
        sha = repo.refs.get(revision) or (revision if revision in repo.commits else None)
        if sha is None:
            raise _Reply(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return sha

    def _check_gate(self, repo_id: str, repo: _Repo, authorization: str | None) -> None:
        if repo.gate_token is None or authorization == f"Bearer {repo.gate_token}":
            return
        if authorization is None:
            message = (
                f"Access to model {repo_id} is restricted. You must have access to it and be"
                " authenticated to access it. Please log in."
            )
            raise _Reply(401, "GatedRepo", message)
        message = f"Access to model {repo_id} is restricted and you are not in the authorized list."
        raise _Reply(403, "GatedRepo", message)

    def _resolve(self, repo_id: str, revision: str, filename: str, authorization: str | None):
        with self._lock:
            repo = self._repo(repo_id)
            self._check_gate(repo_id, repo, authorization)
            sha = self._commit(repo, revision)
            blob = repo.commits[sha].get(filename)
        if blob is None:
            raise _Reply(404, "EntryNotFound", "Entry not found", commit=sha)
        return sha, blob

    def _model_info(self, repo_id: str, revision: str, blobs: bool) -> dict:
        with self._lock:
            repo = self._repo(repo_id)
            sha = self._commit(repo, revision)
            tree = repo.commits[sha]
            gated = repo.gate_token is not None
        siblings = []
        for path in sorted(tree):
            sibling = {"rfilename": path}
            if blobs:
                blob = tree[path]
                sibling |= {"size": len(blob.data), "blobId": blob.oid}
                if blob.lfs:
                    lfs = blob.lfs
                    sibling["lfs"] = {
                        "sha256": lfs["oid"],
                        "size": lfs["size"],
                        "pointerSize": lfs["pointerSize"],
                    }
            siblings.append(sibling)
        return {
            "_id": sha[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0],
            "sha": sha,
            "lastModified": _FIXED_DATE,
            "createdAt": _FIXED_DATE,
            "private": False,
            "gated": "manual" if gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(len(blob.data) for blob in tree.values()),
        }

    def _tree(self, repo_id: str, revision: str, folder: str, recursive: bool) -> list[dict]:
        with self._lock:
            repo = self._repo(repo_id)
            sha = self._commit(repo, revision)
            tree = repo.commits[sha]
        prefix = f"{folder}/" if folder else ""
        entries: dict[str, dict] = {}
        for path in sorted(tree):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix) :].split("/")
            depth = len(parts) if recursive else 1
            for i in range(1, min(depth, len(parts) - 1) + 1):
                sub = prefix + "/".join(parts[:i])
                oid = hashlib.sha1(f"{sha}:{sub}".encode()).hexdigest()
                entries.setdefault(sub, {"type": "directory", "oid": oid, "size": 0, "path": sub})
            if recursive or len(parts) == 1:
                blob = tree[path]
                entry = {"type": "file", "oid": blob.oid, "size": len(blob.data), "path": path}
                if blob.lfs:
                    entry["lfs"] = blob.lfs
                entries[path] = entry
        if folder and not entries:
            raise _Reply(404, "EntryNotFound", f"{folder} does not exist on {revision}", sha)
        return list(entries.values())


def _handler_for(server: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_HubHandler):
        hub = server

    return Handler


class _HubHandler(BaseHTTPRequestHandler):
    hub: HubServer
    # HTTP/1.0: one request per connection, so a cut connection and shutdown need no bookkeeping.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests read ``hub.requests`` instead."""

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        split = urlsplit(self.path)
        range_header = self.headers.get("Range")
        self.hub._record(self.command, split.path, range_header)
        # Split before unquoting: a revision such as refs/pr/1 arrives as one quoted segment.
        segments = [unquote(part) for part in split.path.strip("/").split("/")]
        query = parse_qs(split.query)
        try:
            if segments[:2] == ["api", "models"] and len(segments) >= 4:
                self._api(segments[2:], query, body)
            elif len(segments) >= 5 and segments[2] == "resolve":
                repo_id = "/".join(segments[:2])
                filename = "/".join(segments[4:])
                self._file(repo_id, segments[3], filename, range_header, body)
            else:
                raise _Reply(404, None, "Sorry, we can't find the page you are looking for.")
        except _Reply as reply:
            self._error(reply, body)

    def _api(self, parts: list[str], query: dict, body: bool) -> None:
        repo_id = "/".join(parts[:2])
        rest = parts[2:]
        if not rest:
            payload = self.hub._model_info(repo_id, "main", _flag(query, "blobs"))
        elif rest[0] == "revision" and len(rest) == 2:
            payload = self.hub._model_info(repo_id, rest[1], _flag(query, "blobs"))
        elif rest[0] == "tree" and len(rest) >= 2:
            folder = "/".join(rest[2:])
            payload = self.hub._tree(repo_id, rest[1], folder, _flag(query, "recursive"))
        else:
            raise _Reply(404, None, "Sorry, we can't find the page you are looking for.")
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _file(self, repo_id: str, revision: str, filename: str, range_header, body: bool) -> None:
        sha, blob = self.hub._resolve(
            repo_id, revision, filename, self.headers.get("Authorization")
        )
        total = len(blob.data)
        start, end = 0, total - 1
        status = 200
        if range_header and body:
            start, end = _byte_range(range_header, total, sha)
            status = 206
        payload = blob.data[start : end + 1]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{blob.etag}"')
        self.send_header("X-Repo-Commit", sha)
        if blob.lfs:
            self.send_header("X-Linked-Etag", f'"{blob.etag}"')
            self.send_header("X-Linked-Size", str(total))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{total}")
        self.end_headers()
        if not body:
            return
        cut = self.hub._take_cut(filename)
        self.wfile.write(payload if cut is None else payload[:cut])
        self.wfile.flush()

    def _error(self, reply: _Reply, body: bool) -> None:
        data = json.dumps({"error": reply.message}).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if reply.code:
            self.send_header("X-Error-Code", reply.code)
            self.send_header("X-Error-Message", reply.message)
        if reply.commit:
            self.send_header("X-Repo-Commit", reply.commit)
        self.end_headers()
        if body:
            self.wfile.write(data)


def _flag(query: dict, name: str) -> bool:
    return query.get(name, ["false"])[-1].lower() in ("1", "true")


def _byte_range(header: str, total: int, sha: str) -> tuple[int, int]:
    """First and last byte of a single ``bytes=`` range, or a 416 answer."""
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.groups() == ("", ""):
        raise _Reply(416, None, f"Unsupported range {header}", sha)
    first, last = match.groups()
    if first == "":  # a suffix range: the last N bytes
        start, end = max(total - int(last), 0), total - 1
    else:
        start, end = int(first), min(int(last), total - 1) if last else total - 1
    if start >= total or start > end:
        raise _Reply(416, None, f"Range {header} not satisfiable for {total} bytes", sha)
    return start, end


def use_hub_server(monkeypatch, url: str, cache_dir: os.PathLike) -> None:
    """Aim the imported ``huggingface_hub`` at ``url`` with ``cache_dir`` as its cache, no token."""
    from huggingface_hub import constants, hf_api
    from huggingface_hub.utils import _detect_agent

    home = Path(cache_dir).parent / "hf_home"
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache_dir))
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(constants, "ENDPOINT", url)
    template = url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache_dir))
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_api.api, "endpoint", url)
    # The first request of a process also fetches {ENDPOINT}/api/agent-harnesses: settle it here.
    monkeypatch.setattr(_detect_agent, "_registry", _detect_agent._EMPTY_REGISTRY)


def running_hub_server() -> Iterator[HubServer]:
    """Pytest fixture body: ``hub_server = pytest.fixture(running_hub_server)`` in a conftest."""
    with HubServer() as server:
        yield server
