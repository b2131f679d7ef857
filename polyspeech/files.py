"""Files polyspeech reads and writes, in one place: every way a path can be wrong (missing, a
folder where a file belongs or the other way round, unreadable, not text, under a file) is an
:class:`InputError` naming the path, and a reader never sees half of a written file."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from polyspeech.errors import InputError

_UMASK = os.umask(0o022)  # read the process's umask (it can only be read by setting it) ...
os.umask(_UMASK)  # ... and put it back


def _reason(error: OSError) -> str:
    return (error.strerror or str(error)).lower()


def named_weights(folder: Path, config: dict) -> Path | None:
    """The weights file a model folder's ``config`` names as stored elsewhere (``base_weights``:
    ``{"path": relative to folder, "sha256": ...}``), or None where it names none."""
    shared = config.get("base_weights")
    return None if shared is None else (folder / shared["path"]).resolve()


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, in hex, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def check_input_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a file that exists and can be read; otherwise an error naming ``what``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {what} not found")
    if not path.is_file():
        raise InputError(f"{path}: {what} is a folder, not a file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: {what} cannot be read (permission denied)")
    return path


@contextmanager
def open_text(path: str | os.PathLike, what: str) -> Iterator[IO[str]]:
    """A UTF-8 text input; a missing, unreadable or non-UTF-8 file is an error naming it."""
    path = check_input_file(path, what)
    try:
        with open(path, encoding="utf-8") as stream:
            yield stream
    except UnicodeDecodeError:
        raise InputError(f"{path}: {what} is not UTF-8 text") from None
    except OSError as error:
        raise InputError(f"{path}: {what} cannot be read ({_reason(error)})") from None


def read_text(path: str | os.PathLike, what: str) -> str:
    """The whole UTF-8 text of an input file (see :func:`open_text`)."""
    with open_text(path, what) as stream:
        return stream.read()


def read_json(path: str | os.PathLike, what: str):
    """The JSON value of an input file (a config); invalid JSON is an error naming the line."""
    import json

    try:
        return json.loads(read_text(path, what))
    except json.JSONDecodeError as error:
        raise InputError(f"{path}:{error.lineno}: {what} is not valid JSON ({error.msg})") from None


def read_config(path: str | os.PathLike, kind: type, what: str) -> dict:
    """The JSON object of a config file for the dataclass ``kind``; a key ``kind`` does not
    have is an error naming it (a misspelt setting is not silently ignored or a traceback)."""
    import dataclasses

    data = read_json(path, what)
    if not isinstance(data, dict):
        raise InputError(f"{path}: {what} must be a JSON object")
    unknown = sorted(set(data) - {field.name for field in dataclasses.fields(kind)})
    if unknown:
        raise InputError(f"{path}: unknown {what} setting(s): {', '.join(unknown)}")
    return data


def check_output_file(path: str | os.PathLike) -> Path:
    """``path`` as a file that can be written: not a folder, and not under a file."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name to write")
    _check_ancestors(path.parent, path)
    return path


def check_output_folder(path: str | os.PathLike) -> Path:
    """``path`` as a folder that exists or can be made: not a file, and not under a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: is a file; give a folder to write into")
    _check_ancestors(path.parent, path)
    return path


def _check_ancestors(folder: Path, target: Path) -> None:
    for ancestor in (folder, *folder.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise InputError(f"{target}: cannot be written, {ancestor} is a file")
            if not os.access(ancestor, os.W_OK | os.X_OK):
                raise InputError(f"{target}: cannot be written ({ancestor}: permission denied)")
            return


def make_folder(path: str | os.PathLike) -> Path:
    """Make the folder ``path`` (and its parents) unless it exists; an error names it."""
    path = check_output_folder(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{path}: cannot make the folder ({_reason(error)})") from None
    return path


@contextmanager
def atomic_text_file(path: str | os.PathLike) -> Iterator[IO[str]]:
    """A UTF-8 text stream whose file appears under ``path`` only when the block completes."""
    with _atomic(path, "w", "utf-8") as stream:
        yield stream


@contextmanager
def atomic_binary_file(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """A binary stream whose file appears under ``path`` only when the block completes."""
    with _atomic(path, "wb", None) as stream:
        yield stream


@contextmanager
def _atomic(path: str | os.PathLike, mode: str, encoding: str | None) -> Iterator[IO]:
    path = check_output_file(path)
    make_folder(path.parent)
    try:
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
    except OSError as error:
        raise InputError(f"{path}: cannot be written ({_reason(error)})") from None
    try:
        os.chmod(temporary, 0o666 & ~_UMASK)  # as open() would make it; mkstemp's is 0600
        with os.fdopen(handle, mode, encoding=encoding) as stream:
            yield stream
        os.replace(temporary, path)
    except BaseException as error:
        os.unlink(temporary)
        if isinstance(error, OSError):
            raise InputError(f"{path}: cannot be written ({_reason(error)})") from None
        raise


def atomic_torch_save(state: object, path: str | os.PathLike) -> None:
    """``torch.save`` that replaces ``path`` only once the new file is whole: a kill while
    writing leaves the previous file as it was."""
    import torch

    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)
