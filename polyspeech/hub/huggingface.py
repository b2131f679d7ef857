"""Models on the Hugging Face Hub by id, through ``huggingface_hub`` and its standard cache.

Resolving ``ORG/NAME[@REV]`` asks the Hub once for the revision's commit and file list, then
downloads the base files that are not cached yet into ``models--ORG--NAME/snapshots/<commit>``
(``blobs/`` holds the content) and records the commit in ``refs/<REV>``, as the client does.
Base files are those a loader reads (:func:`base_files`: configs, tokenizers and one set
of weights) but per-language adapters, fetched when a language is used (see
:meth:`polyspeech.hub.ModelSource.fetch`).

Offline (``HF_HUB_OFFLINE=1``) or with the Hub out of reach, the cache answers: the revision
through ``refs/``, the file list through the listing the client caches per commit
(``trees/<commit>.json``). The client shows a progress bar only on a terminal, and resumes a
download its connection dropped (an HTTP Range request); a file cut short by a killed process
is downloaded again from the start (huggingface_hub 2.4 keeps no partial file between runs).

``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_HUB_CACHE`` and ``HF_HOME`` are read when a model is
resolved, so a program that sets them after importing huggingface_hub is heard too.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from polyspeech.errors import InputError
from polyspeech.files import atomic_text_file
from polyspeech.hub.source import ADAPTER, CONFIGS, ModelSource, download_command

COMMIT = re.compile(r"[0-9a-f]{40}")
DEFAULT_REVISION = "main"
# what loaders read besides weights: configs, tokenizers, vocabularies, CMVN statistics
READ_FILES = (".json", ".txt", ".model", ".jinja", ".mvn")
# a model card or licence, kept with the weights wherever it is
DOCS = re.compile(r"(README|LICEN[CS]E)(\.\w+)?", re.IGNORECASE)
# pickled torch weights, left out where the same folder has safetensors
PICKLES = (".bin", ".pt", ".pth", ".ckpt")
# transformers' weight sets: model.safetensors, its shards, and variants (model.fp32-*) that it
# reads only when asked for that variant
MODEL_WEIGHTS = re.compile(r"model(?P<variant>\.\w+)?(?:-\d{5}-of-\d{5})?\.safetensors")
# what makes a repository a model polyspeech loads: a config at the top (CONFIGS), or MooER's
# encoder (polyspeech.speechllm.folder.MOOER_ENCODER) at most two folders down
MOOER_ENCODER = "paraformer-encoder.pth"
# a speech LLM's parts in folders of their own (ours: encoder/, llm/, lora/; MooER's:
# paraformer_encoder/, a task folder and its lora_weights/, the LLM's): what each holds
SPEECH_LLM_PARTS = (
    "config.json",
    "adapter_config.json",
    "adapter_project.pt",
    "am.mvn",
    MOOER_ENCODER,
)


@dataclass(frozen=True)
class HubSettings:
    endpoint: str
    offline: bool
    cache: Path


def hub_settings() -> HubSettings:
    """The endpoint, offline mode and cache folder, from the environment as it is now, else
    from what huggingface_hub read when it was imported."""
    from huggingface_hub import constants

    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in constants.ENV_VARS_TRUE_VALUES
    if os.environ.get("HF_HUB_CACHE"):
        cache = os.environ["HF_HUB_CACHE"]
    elif os.environ.get("HF_HOME"):
        cache = os.path.join(os.environ["HF_HOME"], "hub")
    else:
        cache = constants.HF_HUB_CACHE
    return HubSettings(
        (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/"),
        offline or constants.is_offline_mode(),
        Path(cache).expanduser(),
    )


def storage_folder(cache: Path, repo_id: str) -> Path:
    """The cache's folder of a model repository (``models--ORG--NAME``)."""
    return cache / f"models--{repo_id.replace('/', '--')}"


def base_files(listing: frozenset[str]) -> list[str]:
    """The files a model needs before any language is chosen: in each folder a loader reads,
    its configs, tokenizer and vocabulary files (:data:`READ_FILES`) and one set of weights
    (safetensors over pickles; ``model.safetensors`` over shards and variants of it), but no
    per-language adapter; and model cards and licences. A loader reads the top folder, and of
    a speech LLM's (ours, MooER's) the folders of its parts (:data:`SPEECH_LLM_PARTS`; of a
    MooER release only the task it loads: :func:`polyspeech.hub.mooer.unused_files`). So
    mms-1b-all's ``vocabs/`` and scripts, Whisper's fp32 shards beside its
    ``model.safetensors``, other frameworks' weights and MooER's ``assets/`` stay out."""
    from polyspeech.hub.mooer import unused_files

    by_folder: dict[str, list[str]] = {}
    for path in listing:
        folder, _, name = path.rpartition("/")
        by_folder.setdefault(folder, []).append(name)
    read = {""}
    if "polyspeech.json" in listing or any(
        name == MOOER_ENCODER and path.count("/") <= 2
        for path in listing
        for name in [path.rpartition("/")[2]]
    ):
        read |= {
            path.rpartition("/")[0]
            for path in listing
            if path.count("/") <= 2 and path.rpartition("/")[2] in SPEECH_LLM_PARTS
        }
    unused = unused_files(sorted(listing))
    wanted = []
    for folder, names in by_folder.items():
        kept = {name for name in names if DOCS.fullmatch(name)}
        if folder in read:
            kept |= {name for name in names if name.endswith(READ_FILES)}
            kept |= _weights(names)
        wanted += [f"{folder}/{name}" if folder else name for name in kept]
    return sorted(
        path
        for path in wanted
        if not ADAPTER.fullmatch(path.rpartition("/")[2]) and path not in unused
    )


def _weights(names: list[str]) -> set[str]:
    """The weights a loader reads among one folder's files ``names``."""
    safetensors = [name for name in names if name.endswith(".safetensors")]
    if not safetensors:
        return {name for name in names if name.endswith(PICKLES)}
    sets = {name: found for name in safetensors if (found := MODEL_WEIGHTS.fullmatch(name))}
    if "model.safetensors" in sets:
        chosen = {"model.safetensors"}
    else:
        chosen = {name for name, found in sets.items() if found["variant"] is None} or set(sets)
    return {name for name in safetensors if name not in sets} | chosen


def is_loadable(listing: frozenset[str]) -> bool:
    """Whether a repository's files make a model polyspeech loads."""
    return any(config in listing for config in CONFIGS) or any(
        f.rpartition("/")[2] == MOOER_ENCODER and f.count("/") <= 2 for f in listing
    )


def resolve_huggingface(
    name: str, repo_id: str, revision: str | None
) -> tuple[ModelSource, list[tuple[str, int]]]:
    """The model ``repo_id`` at ``revision`` (default: main), its base files in the cache, and
    the files this call downloaded with their sizes. ``name`` is the id as the user gave it."""
    from huggingface_hub import HfApi, snapshot_download

    settings = hub_settings()
    wanted = revision or DEFAULT_REVISION
    if settings.offline:
        return _from_cache(name, repo_id, wanted, settings, "the Hub is offline (HF_HUB_OFFLINE)")
    storage = storage_folder(settings.cache, repo_id)
    commit = wanted if COMMIT.fullmatch(wanted) else None
    # a commit never changes: its listing in the cache is as good as the Hub's
    listing = None if commit is None else _cached_listing(repo_id, commit, settings.cache)
    if listing is None:
        try:
            info = HfApi(endpoint=settings.endpoint).model_info(repo_id, revision=wanted)
        except _client_errors() as error:
            reason = _unreachable(error, settings.endpoint)
            if reason is None:
                raise _hub_error(error, name, repo_id, wanted, settings.endpoint) from None
            return _from_cache(name, repo_id, wanted, settings, reason)
        commit, listing = info.sha, frozenset(s.rfilename for s in info.siblings or [])
    if not is_loadable(listing):
        raise InputError(
            f"{name}: not a model polyspeech can load (no config.json, and not MooER's release "
            "layout)"
        )
    snapshot = storage / "snapshots" / commit
    missing = [f for f in base_files(listing) if not (snapshot / f).is_file()]
    if missing:
        try:
            with _progress_bars():
                snapshot_download(
                    repo_id,
                    revision=commit,
                    cache_dir=settings.cache,
                    endpoint=settings.endpoint,
                    allow_patterns=[_literal(f) for f in missing],
                )
        except _client_errors() as error:
            raise _hub_error(error, name, repo_id, wanted, settings.endpoint) from None
    if wanted != commit:
        _write_ref(storage, wanted, commit)
    source = ModelSource(
        name, snapshot, "huggingface", repo_id, commit, listing, fetcher=fetch_huggingface
    )
    return source, [(f, (snapshot / f).stat().st_size) for f in missing]


def fetch_huggingface(source: ModelSource, filename: str) -> Path:
    """``filename`` of the resolved model ``source``, downloaded into its snapshot (it is not
    there; :meth:`ModelSource.fetch` asks only then)."""
    from huggingface_hub import hf_hub_download

    settings = hub_settings()
    command = download_command(source.name, filename)
    if settings.offline:
        raise InputError(
            f"{source.name}: {filename} is not in the Hugging Face cache and the Hub is offline "
            f"(HF_HUB_OFFLINE); fetch it with network access: {command}"
        )
    try:
        with _progress_bars():
            hf_hub_download(
                source.repo_id,
                filename,
                revision=source.revision,
                cache_dir=source.folder.parent.parent.parent,
                endpoint=settings.endpoint,
            )
    except _client_errors() as error:
        reason = _unreachable(error, settings.endpoint)
        if reason is not None:
            raise InputError(
                f"{source.name}: {filename} is not in the Hugging Face cache and {reason}; "
                f"fetch it with network access: {command}"
            ) from None
        raise _hub_error(
            error, source.name, source.repo_id, source.revision, settings.endpoint, filename
        ) from None
    return source.folder / filename


@contextlib.contextmanager
def _progress_bars() -> Iterator[None]:
    """The client's progress bars on a terminal only: off one, its bar counting the files of a
    download shows all the same. ``HF_HUB_DISABLE_PROGRESS_BARS=0`` keeps them everywhere."""
    from huggingface_hub import constants
    from huggingface_hub.utils import disable_progress_bars

    if constants.HF_HUB_DISABLE_PROGRESS_BARS is False or (sys.stderr and sys.stderr.isatty()):
        yield
        return
    with disable_progress_bars():
        yield


def _cached_listing(repo_id: str, commit: str, cache: Path) -> frozenset[str] | None:
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        return frozenset(
            f.path for f in get_cached_repo_tree(repo_id, revision=commit, cache_dir=cache)
        )
    except CachedRepoTreeNotFoundError:
        return None


def _from_cache(
    name: str, repo_id: str, wanted: str, settings: HubSettings, reason: str
) -> tuple[ModelSource, list[tuple[str, int]]]:
    """The model as the cache has it, ``reason`` saying why the Hub was not asked."""
    storage = storage_folder(settings.cache, repo_id)
    commit = wanted if COMMIT.fullmatch(wanted) else None
    ref = storage / "refs" / wanted
    if commit is None and ref.is_file():
        commit = ref.read_text().strip()
    if commit is None or not (storage / "snapshots" / commit).is_dir():
        raise InputError(
            f"{name}: not in the Hugging Face cache ({settings.cache}) and {reason}; fetch it "
            f"with network access: {download_command(name)}"
        )
    snapshot = storage / "snapshots" / commit
    listing = _cached_listing(repo_id, commit, settings.cache)
    if listing is not None:
        needed = [f for f in base_files(listing) if not (snapshot / f).is_file()]
    else:  # a snapshot another program filled, its listing not kept: a model must be there
        present = frozenset(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*"))
        needed = [] if is_loadable(present) else ["config.json"]
    if needed:
        raise InputError(
            f"{name}: {needed[0]} is not in the Hugging Face cache and {reason}; fetch it with "
            f"network access: {download_command(name)}"
        )
    source = ModelSource(
        name, snapshot, "huggingface", repo_id, commit, listing, fetcher=fetch_huggingface
    )
    return source, []


def _write_ref(storage: Path, revision: str, commit: str) -> None:
    """``refs/<revision>`` names the commit it was last resolved to, as the client writes it."""
    ref = storage / "refs" / revision
    if ref.is_file() and ref.read_text() == commit:
        return
    ref.parent.mkdir(parents=True, exist_ok=True)
    with atomic_text_file(ref) as stream:
        stream.write(commit)


def _literal(filename: str) -> str:
    """``filename`` as an fnmatch pattern that matches it alone."""
    return re.sub(r"([*?\[])", r"[\1]", filename)


def _client_errors() -> tuple[type[Exception], ...]:
    """What huggingface_hub raises for a request that failed (an OSError for most, HTTP errors
    among them; ValueError for an invalid id; Xet's own download error)."""
    import httpx2
    from huggingface_hub.errors import XetDownloadError

    return (OSError, ValueError, httpx2.HTTPError, XetDownloadError)


def _unreachable(error: Exception, endpoint: str) -> str | None:
    """Why the Hub could not answer (no network, a timeout, a server error), or None when it
    did answer and the error is about the request."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    if isinstance(error, OfflineModeIsEnabled):
        return "the Hub is offline (HF_HUB_OFFLINE)"
    if isinstance(error, httpx2.TransportError):
        return f"the Hub cannot be reached at {endpoint} ({type(error).__name__})"
    if isinstance(error, LocalEntryNotFoundError):
        return f"the Hub cannot be reached at {endpoint}"
    if isinstance(error, HfHubHTTPError) and error.response.status_code in (
        429,
        500,
        502,
        503,
        504,
    ):
        return f"the Hub at {endpoint} answered HTTP {error.response.status_code}"
    return None


def _hub_error(
    error: Exception,
    name: str,
    repo_id: str,
    revision: str,
    endpoint: str,
    filename: str | None = None,
) -> InputError:
    """``error`` from huggingface_hub as one line naming the id."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(error, GatedRepoError):
        return InputError(
            f"{name}: a gated model; accept its conditions on {endpoint}/{repo_id} and log in "
            "(hf auth login, or set HF_TOKEN)"
        )
    if isinstance(error, RepositoryNotFoundError):
        return InputError(
            f"{name}: no such model on the Hugging Face Hub and no such local folder (a private "
            "model needs a login: hf auth login, or set HF_TOKEN)"
        )
    if isinstance(error, RevisionNotFoundError):
        return InputError(
            f"{name}: {repo_id} has no revision {revision!r} (a branch, tag or commit)"
        )
    if isinstance(error, RemoteEntryNotFoundError):
        return InputError(f"{name}: the repository has no {filename or 'such file'}")
    if isinstance(error, HFValidationError):
        return InputError(f"{name}: not a valid Hub id ({' '.join(str(error).split())})")
    if isinstance(error, HfHubHTTPError) and error.response.status_code == 401:
        return InputError(f"{name}: the Hub refused the token (HTTP 401); check HF_TOKEN")
    detail = " ".join(str(error).split())[:160]
    return InputError(
        f"{name}: downloading {filename or 'the model'} failed ({type(error).__name__}: {detail})"
    )
