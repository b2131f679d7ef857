"""The conversion cache: a quantised wav2vec2's int8 weights kept on disk after its first load,
so that later loads read them instead of quantising the float32 checkpoint again.

An entry is a safetensors file holding the model as loaded, before packing: each int8 layer's
weights, scale and zero point, and every other weight in the type it is used in. Packing for the
CPU's int8 kernels is not cached (torch can only save packed layers unpacked) and is done again
at each load, on several threads.

Where entries live: for a model in the Hugging Face cache, inside its repository's folder there,
``models--ORG--NAME/polyspeech/``, so that deleting the model (``hf cache delete``) deletes its
entries too (the hub client reads only its own ``blobs``, ``refs`` and ``snapshots``); an entry
whose blob a pruned revision took away is removed when the next entry is written. For any other
folder, and for a hub cache this user cannot write to (one shared read-only), under
``$POLYSPEECH_CACHE/converted`` (default ``~/.cache/polyspeech``): a model folder may be
read-only, shared or under version control, and is not polyspeech's to write into.

The key needs no network: the weights' identity (in the hub cache, the blob the snapshot's file
links to, named by its content hash; else the file's resolved path, size and ``mtime_ns``), a
hash of ``config.json``, the architecture, the precision, torch's version (the quantisation is
torch's) and the CPU's vector instruction set (torch quantises in vector code chosen for it,
whose rounding another set's need not match). An entry
of another key, or one damaged or cut short, is converted again and replaced: never an error.
Entries are written atomically (:func:`polyspeech.files.atomic_binary_file`): an interrupted
load leaves no entry, or the previous one. A cache that cannot be written costs a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from polyspeech.errors import InputError
from polyspeech.files import atomic_binary_file

log = logging.getLogger(__name__)

CACHE_ENV = "POLYSPEECH_CACHE"
FORMAT = "2"  # what an entry holds and how it is made; a change here makes old entries stale
HUB_FOLDER = "polyspeech"  # ours, inside a hub cache's models--ORG--NAME folder


def cache_root() -> Path:
    """polyspeech's cache folder: ``$POLYSPEECH_CACHE``, default ``~/.cache/polyspeech``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "polyspeech").expanduser()


@dataclass(frozen=True)
class Entry:
    """Where the converted weights of one model file live, and the key they must carry."""

    path: Path
    metadata: dict[str, str]
    blobs: Path | None  # the hub cache's blobs folder, for an entry kept beside them


def _hub_blob(weights: Path) -> Path | None:
    """The blob a Hugging Face cache snapshot's file links to
    (``models--ORG--NAME/blobs/<content hash>``); None for any other file."""
    if not weights.is_symlink():
        return None
    blob = weights.resolve()
    if blob.parent.name != "blobs" or not (blob.parent.parent / "snapshots").is_dir():
        return None
    return blob


def entry_for(weights: Path, config: Path, architecture: str, dtype: torch.dtype) -> Entry:
    """The entry of the int8 conversion of ``weights`` (the rest of the model in ``dtype``)."""
    precision = f"int8+{str(dtype).removeprefix('torch.')}"
    name = f"{architecture}.{precision}.safetensors"
    blob, blobs = _hub_blob(weights), None
    if blob is not None:
        repo = blob.parent.parent
        if os.access(repo, os.W_OK):
            folder, blobs = repo / HUB_FOLDER, blob.parent
        else:  # a hub cache shared read-only
            folder = cache_root() / "converted"
        path = folder / f"{blob.name}.{name}"
        identity = f"hub blob {blob.name}"
    else:
        resolved = weights.resolve()
        stat = resolved.stat()
        digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:32]
        path = cache_root() / "converted" / f"{digest}.{name}"
        identity = f"{resolved} size {stat.st_size} mtime_ns {stat.st_mtime_ns}"
    metadata = {
        "format": FORMAT,
        "weights": identity,
        "config": hashlib.sha256(config.read_bytes()).hexdigest(),
        "architecture": architecture,
        "precision": precision,
        "torch": torch.__version__,
        "cpu": torch.backends.cpu.get_cpu_capability(),
    }
    return Entry(path, metadata, blobs)


class EntryWriter:
    """Writes an entry while the conversion makes its tensors, in ``layout`` order ((name,
    safetensors type, shape, bytes) each); :meth:`finish` publishes it, :meth:`abandon` drops
    it. A cache that cannot be written (read-only, disk full) drops the entry with a warning and
    lets the load go on."""

    def __init__(self, entry: Entry, layout: list[tuple[str, str, tuple[int, ...], int]]):
        self.entry = entry
        header: dict = {"__metadata__": entry.metadata}
        offset = 0
        for name, code, shape, size in layout:
            header[name] = {
                "dtype": code,
                "shape": list(shape),
                "data_offsets": [offset, offset + size],
            }
            offset += size
        self._left = offset  # bytes still to come: the entry is published only when whole
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)  # the data starts 8-aligned, as safetensors writes it
        self._writing = atomic_binary_file(entry.path)
        self._stream = None
        try:
            self._stream = self._writing.__enter__()
            self._stream.write(len(text).to_bytes(8, "little") + text)
        except (InputError, OSError) as error:
            self._give_up(error)

    def write(self, data: memoryview) -> None:
        """The bytes of the next tensor of the layout."""
        if self._stream is None:
            return
        try:
            self._stream.write(data)
        except OSError as error:
            self._give_up(error)
            return
        self._left -= data.nbytes

    def finish(self) -> None:
        """Publish the entry (every tensor of the layout was written)."""
        if self._stream is None:
            return
        if self._left:
            self._give_up(RuntimeError(f"{self._left} bytes short"))
            return
        self._stream = None
        try:
            self._writing.__exit__(None, None, None)
        except InputError as error:
            log.warning("%s; the converted model is not cached", error)
            return
        if self.entry.blobs is not None:
            _remove_orphans(self.entry.path.parent, self.entry.blobs)

    def abandon(self) -> None:
        """Drop the entry (the load failed or was interrupted): nothing is left of it."""
        if self._stream is not None:
            self._stream = None
            self._writing.__exit__(_Abandoned, _Abandoned(), None)

    def _give_up(self, error: BaseException) -> None:
        log.warning("%s: the converted model is not cached (%s)", self.entry.path, error)
        if self._stream is not None:
            self._stream = None
            try:  # the atomic writer deletes its temporary file, then re-raises
                self._writing.__exit__(type(error), error, error.__traceback__)
            except InputError:
                pass


class _Abandoned(Exception):
    """Thrown into the atomic writer so that it deletes what it had written."""


def _remove_orphans(folder: Path, blobs: Path) -> None:
    """Remove the entries of blobs the hub cache no longer has (a pruned revision's)."""
    for path in folder.glob("*.safetensors"):
        if not (blobs / path.name.split(".", 1)[0]).exists():
            path.unlink(missing_ok=True)
