"""A model's files and how polyspeech names them: builtin names, hub ids, adapters.

:class:`ModelSource` is what :func:`polyspeech.hub.resolve_model` answers; each hub's backend
(:mod:`polyspeech.hub.huggingface`, :mod:`polyspeech.hub.modelscope`) builds its sources with
its own fetcher, so this module depends on none of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from polyspeech.errors import InputError

ASSETS = Path(__file__).resolve().parent.parent / "assets"
BUILTIN = {
    "builtin:ctc": ASSETS / "ctc",
    "builtin:align": ASSETS / "align",
    "builtin:speechllm": ASSETS / "speechllm",
    "builtin:lid": ASSETS / "lid",
}
HUB_KINDS = ("huggingface", "modelscope")
MODELSCOPE = "modelscope:"
# A Hub repository id as the Hub spells them: letters, digits, "-", "_" and "." on each side
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
# the file a model folder is known by: a Hugging Face config, or our speech LLM's
CONFIGS = ("config.json", "polyspeech.json")
ADAPTER = re.compile(r"adapter\.(?P<lang>[^/]+)\.(?:safetensors|bin)")


@dataclass(frozen=True)
class ModelSource:
    """A model's files: ``folder`` holds them (for a hub id, the cache's snapshot of the resolved
    commit, ``revision``). ``listing`` is every file of a hub repository where it is known (from
    the Hub, or the listing the cache keeps); None for a local folder."""

    name: str
    folder: Path
    kind: str  # "builtin" | "folder" | "huggingface" | "modelscope"
    repo_id: str | None = None
    revision: str | None = None
    listing: frozenset[str] | None = field(default=None, repr=False)
    # the hub backend's download of one file (None: a local folder's files are all there)
    fetcher: Callable[[ModelSource, str], Path] | None = field(
        default=None, repr=False, compare=False
    )

    def fetch(self, filename: str) -> Path:
        """The path of the model's file ``filename`` (``adapter.fra.safetensors``); for a hub id,
        downloaded into the cache first if it is not there. Offline and not cached: an error
        naming the repository, the file and the ``polyspeech download`` command that fetches
        it. A local folder's path is returned as it is: its reader names a missing file."""
        path = self.folder / filename
        if self.fetcher is None or path.is_file():
            return path
        if self.listing is not None and filename not in self.listing:
            raise InputError(f"{self.name}: the repository has no {filename}")
        return self.fetcher(self, filename)

    def config_file(self) -> Path:
        """The model's ``config.json``; a folder without one is an error naming the folder."""
        path = self.folder / "config.json"
        if not path.is_file():
            raise InputError(f"{self.folder}: not a model folder (no config.json)")
        return path

    def has_file(self, filename: str) -> bool:
        """Whether the model has ``filename``: in its listing where one is known, else in its
        folder; an offline hub model without a listing is taken to have it (fetching it says
        if it does not)."""
        if self.listing is not None:
            return filename in self.listing
        return self.kind in HUB_KINDS or (self.folder / filename).is_file()

    def describe(self) -> dict:
        """Where results came from: the name given, the repository and commit, the hub."""
        return {
            "model": self.name,
            "repo": self.repo_id,
            "revision": self.revision,
            "hub": self.kind,
        }


def download_command(name: str, filename: str | None = None) -> str:
    """The command that fetches ``filename`` (an adapter: its language) of the model ``name``."""
    found = ADAPTER.fullmatch(filename or "")
    return f"polyspeech download {name}" + (f" --lang {found['lang']}" if found else "")


def split_revision(name: str, revision: str | None) -> tuple[str, str | None]:
    """``ORG/NAME@REV`` into the id and the revision; a ``revision`` argument that disagrees with
    the one in the name is an error."""
    repo_id, at, named = name.partition("@")
    if at and not named:
        raise InputError(f"{name}: empty revision after @ (ORG/NAME@BRANCH, tag or commit)")
    if named and revision and named != revision:
        raise InputError(f"{name}: two revisions, {named!r} in the id and {revision!r} given")
    return repo_id, named or revision
