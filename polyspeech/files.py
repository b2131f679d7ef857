"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

_UMASK = os.umask(0o022)  # read the process's umask (it can only be read by setting it) ...
os.umask(_UMASK)  # ... and put it back


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, 0o666 & ~_UMASK)  # as open() would make it; mkstemp's is 0600
        with os.fdopen(handle, mode, encoding=encoding) as stream:
            yield stream
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def atomic_torch_save(state: object, path: str | os.PathLike) -> None:
    """``torch.save`` that replaces ``path`` only once the new file is whole: a kill while
    writing leaves the previous file as it was."""
    import torch

    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)
