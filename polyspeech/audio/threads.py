"""Running feature extraction (filterbank, pitch) on one torch thread, so that training's
feature worker processes, several at once, do not each take every core. Alone on two idle
cores a second thread would be faster (2026-12-06, AMD EPYC: the filterbank of the six
examples 3.1-4.0 ms against 5.5-5.7 ms, their pitch 18-26 ms against 32-37 ms), a small share
of a clip's transcription either way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one intra-op thread inside the block, as many as before after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
