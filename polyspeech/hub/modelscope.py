"""Models on ModelScope by id, ``modelscope:ORG/NAME[@REV]``, through ModelScope's own client.

``modelscope`` (an optional extra) hands every download to its ``modelscope_hub`` client since
1.38; polyspeech calls that client directly (``import modelscope`` alone takes four seconds,
and its wrappers turn the client's errors into bare HTTP errors). What the client does:

- Cache: ``$MODELSCOPE_CACHE`` (default ``~/.cache/modelscope``) holds
  ``models/ORG--NAME/snapshots/REV/<files>``, REV being the branch, tag or commit asked for
  (``master`` when none is). Its routes name no commit, so the revision a model records is that
  name. The cache of a client older than 1.38 (``models/ORG/NAME``, or ``hub/models/ORG/NAME``
  in the default cache; a dot in NAME written ``___``) is found and used in its place.
  :func:`cached_models` lists both from the folders alone, without the client (``polyspeech
  models``).
- Endpoint and token: ``MODELSCOPE_ENDPOINT`` (or the older ``MODELSCOPE_DOMAIN``) points it at
  another server, ``MODELSCOPE_API_TOKEN`` (or ``modelscope login``) gives it a token.
- Routes: ``GET /api/v1/models/ORG/NAME/repo/files?Revision=R&Recursive=True`` lists a
  revision's files (path, size, sha256), ``GET /api/v1/models/ORG/NAME/repo?Revision=R&
  FilePath=P`` sends one (a cut download resumes with ``Range`` from ``<file>.incomplete``, in
  the same call or a later one), ``GET /api/v1/models/ORG/NAME`` describes the model.
- Offline: the client has no switch of its own. polyspeech's (``HF_HUB_OFFLINE=1``), or a
  server that cannot be reached, leaves the cache alone to answer.

Resolving lists the revision's files (one request), then downloads the base files the cache
lacks or holds with other content than listed (as for the Hugging Face Hub,
:func:`polyspeech.hub.huggingface.base_files`; of a MooER release, only the task folder it
loads). A branch's snapshot folder keeps its name when the branch moves, so each cached file's
sha256 is kept in ``snapshots/REV.polyspeech-sha256.json`` beside it: a file is hashed once,
not on every load. The client's progress bars show on a terminal only, its log from warnings
up (unless ``MODELSCOPE_LOG_LEVEL`` says otherwise).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from polyspeech.errors import DependencyError, InputError
from polyspeech.files import atomic_text_file, file_sha256
from polyspeech.hub.huggingface import base_files, hub_settings, is_loadable
from polyspeech.hub.mooer import unused_files
from polyspeech.hub.source import ADAPTER, MODELSCOPE, ModelSource, download_command

DEFAULT_REVISION = "master"
RECORD = ".polyspeech-sha256.json"  # beside a snapshot folder: each checked file's sha256
INSTALL = "pip install 'polyspeech[modelscope]'"


def resolve_modelscope(repo_id: str, revision: str | None) -> ModelSource:
    """The ModelScope model ``repo_id`` at ``revision`` (default: master), its base files in
    the cache; a one-line :class:`InputError` for an unknown id or revision, a private model,
    a repository polyspeech cannot load, or a model neither reachable nor cached."""
    hub = _Client()
    errors = hub.errors
    wanted = revision or DEFAULT_REVISION
    name = f"{MODELSCOPE}{repo_id}" + (f"@{revision}" if revision else "")
    if hub_settings().offline:
        return hub.from_cache(name, repo_id, wanted, "polyspeech is offline (HF_HUB_OFFLINE)")
    try:
        entries = hub.api.legacy.list_repo_files(repo_id, "model", revision=wanted)
    except (errors.NetworkError, errors.ServerError) as error:
        return hub.from_cache(name, repo_id, wanted, hub.unreachable(error))
    except (errors.NotExistError, errors.InvalidParameter):
        raise hub.not_found(name, repo_id, wanted) from None
    except errors.HubError as error:
        raise hub.failed(error, name) from None
    files = {_path(e): e for e in entries if _path(e) and _kind(e) != "tree"}
    listing = frozenset(files)
    if not is_loadable(listing):
        raise InputError(
            f"{name}: not a model polyspeech can load (no config.json, and not MooER's release "
            "layout)"
        )
    skipped = unused_files(sorted(listing))
    needed = {f: files[f] for f in base_files(listing) if f not in skipped}
    folder = hub.cached_snapshot(repo_id, wanted)
    missing = list(needed) if folder is None else _stale(folder, needed)
    if missing:
        try:
            with _progress():
                folder = Path(
                    hub.api.download_repo(
                        repo_id, "model", revision=wanted, file_list=[files[f] for f in missing]
                    )
                )
        except errors.HubError as error:
            raise hub.failed(error, name) from None
        _remember(folder, {f: _sha256(files[f]) for f in missing})  # the client checked them
    return ModelSource(
        name, folder, "modelscope", repo_id, wanted, listing, fetcher=fetch_modelscope
    )


@dataclass(frozen=True)
class CachedModel:
    """A model in the ModelScope cache: ``revision`` is the branch, tag or commit its snapshot
    was asked for (None in an older client's cache, which holds one revision, not named)."""

    repo_id: str
    revision: str | None
    folder: Path
    size: int  # bytes on disk
    languages: tuple[str, ...]  # those whose adapters are there

    @property
    def name(self) -> str:
        """The id polyspeech takes for it."""
        return f"{MODELSCOPE}{self.repo_id}"


def cache_folder() -> Path:
    """The ModelScope cache, as the client finds it: ``$MODELSCOPE_CACHE``, else
    ``~/.cache/modelscope``."""
    return Path(os.environ.get("MODELSCOPE_CACHE") or "~/.cache/modelscope").expanduser()


def cached_models(cache: Path | None = None) -> list[CachedModel]:
    """Every model in the ModelScope cache ``cache`` (default: :func:`cache_folder`), one
    entry per cached revision, by id: the client's layout and, where it reuses it, an older
    client's. The folders are read as they are: neither the client nor the network is needed."""
    root = cache_folder() if cache is None else cache
    found = []
    for base in (root / "models", root / "hub" / "models"):
        for entry in _folders(base):
            owner, split, name = entry.name.partition("--")
            if split and base == root / "models":  # models/ORG--NAME/snapshots/REV
                found += [
                    _cached(f"{owner}/{name}", snapshot.name, snapshot)
                    for snapshot in _folders(entry / "snapshots")
                ]
            elif not split:  # an older client's models/ORG/NAME, a dot in NAME written ___
                found += [
                    _cached(f"{owner}/{folder.name.replace('___', '.')}", None, folder)
                    for folder in _folders(entry)
                ]
    return sorted(
        (model for model in found if model is not None),
        key=lambda model: (model.repo_id, model.revision or ""),
    )


def _folders(parent: Path) -> list[Path]:
    return sorted(path for path in parent.iterdir() if path.is_dir()) if parent.is_dir() else []


def _cached(repo_id: str, revision: str | None, folder: Path) -> CachedModel | None:
    """The cached model in ``folder``; None for an empty folder (the client ignores it)."""
    files = [path for path in folder.rglob("*") if path.is_file()]
    if not files:
        return None
    languages = {found["lang"] for path in files if (found := ADAPTER.fullmatch(path.name))}
    size = sum(path.stat().st_size for path in files)
    return CachedModel(repo_id, revision, folder, size, tuple(sorted(languages)))


def fetch_modelscope(source: ModelSource, filename: str) -> Path:
    """``filename`` of the resolved model ``source``, downloaded into its snapshot (it is not
    there; :meth:`ModelSource.fetch` asks only then)."""
    command = download_command(source.name, filename)
    if hub_settings().offline:
        raise InputError(
            f"{source.name}: {filename} is not in the ModelScope cache and polyspeech is offline "
            f"(HF_HUB_OFFLINE); fetch it with network access: {command}"
        )
    hub = _Client()
    errors = hub.errors
    try:
        with _progress():
            return hub.api.download_file(
                source.repo_id, "model", filename, revision=source.revision
            )
    except (errors.NetworkError, errors.ServerError) as error:
        raise InputError(
            f"{source.name}: {filename} is not in the ModelScope cache and "
            f"{hub.unreachable(error)}; fetch it with network access: {command}"
        ) from None
    except errors.NotExistError:
        raise InputError(f"{source.name}: the repository has no {filename}") from None
    except errors.HubError as error:
        raise hub.failed(error, source.name) from None


class _Client:
    """ModelScope's client, configured from the environment as it is now (the client reads its
    process-wide default configuration once), and its errors."""

    def __init__(self) -> None:
        try:
            import modelscope_hub.errors as errors
            from modelscope_hub import HubApi, HubConfig
        except ImportError:
            raise DependencyError(
                f"ModelScope ids need the modelscope package: {INSTALL}"
            ) from None
        if not os.environ.get("MODELSCOPE_LOG_LEVEL"):  # its INFO lines are not for a CLI
            logging.getLogger("modelscope_hub").setLevel(logging.WARNING)
        self.errors = errors
        self.config = HubConfig()
        self.api = HubApi(config=self.config)

    def cached_snapshot(self, repo_id: str, revision: str) -> Path | None:
        """The cache's folder of ``repo_id`` at ``revision``, if it has one."""
        try:
            found = self.api.download_repo(
                repo_id, "model", revision=revision, local_files_only=True
            )
        except self.errors.CacheNotFound:
            return None
        return Path(found)

    def from_cache(self, name: str, repo_id: str, revision: str, reason: str) -> ModelSource:
        """The model as the cache has it, ``reason`` saying why ModelScope was not asked."""
        folder = self.cached_snapshot(repo_id, revision)
        found = [p for p in folder.rglob("*") if p.is_file()] if folder else []
        present = frozenset(p.relative_to(folder).as_posix() for p in found)
        if not is_loadable(present):
            raise InputError(
                f"{name}: not in the ModelScope cache ({self.config.cache_dir}) and {reason}; "
                f"fetch it with network access: {download_command(name)}"
            )
        return ModelSource(name, folder, "modelscope", repo_id, revision, fetcher=fetch_modelscope)

    def not_found(self, name: str, repo_id: str, revision: str) -> InputError:
        """An unknown model, or a known one without ``revision``."""
        try:
            self.api.legacy.get_repo_info(repo_id, "model")
        except self.errors.HubError:
            return InputError(
                f"{name}: no such model on ModelScope and no such local folder (a private model "
                "needs a token: set MODELSCOPE_API_TOKEN)"
            )
        return InputError(
            f"{name}: {repo_id} has no revision {revision!r} (a branch, tag or commit)"
        )

    def failed(self, error: Exception, name: str) -> InputError:
        """``error`` from the client, as one line naming the model."""
        errors = self.errors
        if isinstance(error, (errors.AuthenticationError, errors.PermissionDeniedError)):
            return InputError(
                f"{name}: ModelScope refused access (a private model: set MODELSCOPE_API_TOKEN "
                "to a token that may read it)"
            )
        if isinstance(error, errors.FileDownloadError) and error.failed_files:
            path, cause = next(iter(error.failed_files.items()))
            detail = f"{path}: {type(cause).__name__}: {' '.join(str(cause).split())}"
        elif isinstance(error, (errors.NetworkError, errors.ServerError)):
            detail = self.unreachable(error)
        else:
            detail = f"{type(error).__name__}: {' '.join(str(error).split())}"
        return InputError(f"{name}: downloading from ModelScope failed ({detail[:200]})")

    def unreachable(self, error: Exception) -> str:
        return f"ModelScope cannot be reached at {self.config.endpoint} ({type(error).__name__})"


def _path(entry: dict) -> str:
    return entry.get("Path") or entry.get("path") or ""


def _kind(entry: dict) -> str:
    return entry.get("Type") or entry.get("type") or "blob"


def _sha256(entry: dict) -> str | None:
    return entry.get("Sha256") or entry.get("sha256")


def _stale(folder: Path, entries: dict[str, dict]) -> list[str]:
    """The listed files ``folder`` lacks or holds with another size or sha256 than listed. A
    file's sha256 is computed once and remembered (reading gigabytes on every load would not
    do); a file the record does not know yet is hashed now."""
    record = _record(folder)
    stale, hashed = [], {}
    for path, entry in entries.items():
        target, size, sha = folder / path, entry.get("Size", entry.get("size")), _sha256(entry)
        if not target.is_file() or (size is not None and target.stat().st_size != int(size)):
            stale.append(path)
        elif sha and record.get(path) != sha:
            if file_sha256(target) == sha:
                hashed[path] = sha
            else:
                stale.append(path)
    _remember(folder, hashed)
    return stale


def record_path(folder: Path) -> Path:
    """Where the sha256 of the files of the snapshot ``folder`` are kept: beside it, where
    neither the client nor a listing of the snapshot's files meets it."""
    return folder.with_name(folder.name + RECORD)


def _record(folder: Path) -> dict[str, str]:
    path = record_path(folder)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _remember(folder: Path, hashes: dict[str, str | None]) -> None:
    """Add ``hashes`` (path: sha256) to ``folder``'s record."""
    known = {path: sha for path, sha in hashes.items() if sha}
    if known:
        record = _record(folder) | known
        with atomic_text_file(record_path(folder)) as stream:
            json.dump(record, stream, indent=1, sort_keys=True)


@contextlib.contextmanager
def _progress() -> Iterator[None]:
    """The client draws its progress bars on stderr, a terminal or not: off a terminal they
    are dropped."""
    if sys.stderr is not None and sys.stderr.isatty():
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        yield
