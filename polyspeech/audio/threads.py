"""Running small torch operations on one thread, where a second only adds overhead."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one intra-op thread inside the block, as many as before after it. For work made
    of many tiny operations (silero-vad's 32 ms steps, one clip's filterbank), where a second
    thread costs more than it computes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
