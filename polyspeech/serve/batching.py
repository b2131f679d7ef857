"""Dynamic batching for the server: requests that arrive together are computed together.

Requests wait in one bounded queue. One runner takes the oldest request and the others of the
same kind (the same model and task) behind it, up to ``max_batch``; if fewer are waiting, it
waits up to ``max_wait`` seconds from the oldest one's arrival for more. The batch runs on one
worker thread, so the model computes one batch at a time while the next batch gathers: the
busier the server, the fuller its batches. A full queue refuses at once (:class:`Overloaded`)
instead of piling up work it cannot finish. If a batch fails, its requests run again one by one,
so an error belongs to the request that caused it alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


class Overloaded(Exception):
    """The queue is full; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the server is busy: {retry_after} s until a retry is worthwhile")
        self.retry_after = retry_after


@dataclass
class _Job:
    key: Hashable
    item: Any
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    """``await submit(key, item)`` -> ``run(key, items)[i]`` for that item."""

    def __init__(
        self,
        run: Callable[[Hashable, list[Any]], list[Any]],
        max_batch: int = 16,
        max_wait: float = 0.01,
        max_queue: int = 64,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError("max_batch and max_queue must be at least 1, max_wait at least 0")
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait
        self.max_queue, self.on_batch = max_queue, on_batch  # on_batch(size) after each batch
        self._jobs: list[_Job] = []
        self._arrival = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polyspeech-model")
        self._runner: asyncio.Task | None = None
        self._seconds_per_item = 1.0  # an estimate, for Retry-After

    @property
    def waiting(self) -> int:
        return len(self._jobs)

    def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            try:
                await self._runner
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def submit(self, key: Hashable, item: Any) -> Any:
        self._jobs = [job for job in self._jobs if not job.future.done()]  # cancelled ones
        if len(self._jobs) >= self.max_queue:
            wait = self._seconds_per_item * len(self._jobs) / self.max_batch
            raise Overloaded(max(1, round(wait)))
        job = _Job(key, item, asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._arrival.set()
        return await job.future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._jobs = [job for job in self._jobs if not job.future.done()]
            if not self._jobs:
                self._arrival.clear()
                await self._arrival.wait()
                continue
            first = self._jobs[0]
            same = [job for job in self._jobs if job.key == first.key]
            left = first.arrived + self.max_wait - time.monotonic()
            if len(same) < self.max_batch and left > 0:
                self._arrival.clear()
                try:
                    await asyncio.wait_for(self._arrival.wait(), left)
                except asyncio.TimeoutError:  # not yet TimeoutError itself in Python 3.10
                    pass
                continue
            batch = same[: self.max_batch]
            taken = {id(job) for job in batch}
            self._jobs = [job for job in self._jobs if id(job) not in taken]
            started = time.monotonic()
            outcomes = await loop.run_in_executor(
                self._executor, self._outcomes, first.key, [job.item for job in batch]
            )
            self._seconds_per_item = (time.monotonic() - started) / len(batch)
            if self.on_batch is not None:
                self.on_batch(len(batch))
            for job, (ok, value) in zip(batch, outcomes, strict=True):
                if job.future.done():
                    continue  # its request gave up waiting
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)

    def _outcomes(self, key: Hashable, items: list[Any]) -> list[tuple[bool, Any]]:
        """(True, result) or (False, the exception) per item."""
        try:
            results = self.run(key, items)
            return [(True, result) for result in results]
        except Exception as error:
            if len(items) == 1:
                return [(False, error)]
        return [self._outcomes(key, [item])[0] for item in items]
