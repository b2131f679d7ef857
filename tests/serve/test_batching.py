"""The dynamic batcher on its own: its worker held on an event while the test queues requests,
so what gathers into which batch does not depend on the machine's speed."""

from __future__ import annotations

import asyncio
import threading

import pytest

from polyspeech.serve.batching import DynamicBatcher, Overloaded


class Held:
    """``run`` for a batcher: records each batch, sets ``computing``, waits for ``go``; an item
    ``"bad"`` fails its batch."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list]] = []
        self.computing, self.go = threading.Event(), threading.Event()

    def __call__(self, key, items):
        self.batches.append((key, list(items)))
        self.computing.set()
        self.go.wait()
        if "bad" in items:
            raise ValueError("bad item")
        return [f"{key}{item}" for item in items]


async def held_first(batcher: DynamicBatcher, run: Held) -> asyncio.Future:
    """A first request, taken by the worker and held there: the queue is empty again."""
    first = asyncio.ensure_future(batcher.submit("a", 0))
    assert await asyncio.to_thread(run.computing.wait, 300)
    return first


def test_while_a_batch_computes_the_next_ones_gather_by_kind_up_to_max_batch():
    run = Held()

    async def scenario():
        batcher = DynamicBatcher(run, max_batch=4, max_wait=0, max_queue=64)
        batcher.start()
        try:
            first = await held_first(batcher, run)
            queued = [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("a", 4), ("a", 5), ("b", 2)]
            later = [asyncio.ensure_future(batcher.submit(*job)) for job in queued]
            await asyncio.sleep(0)  # one turn of the loop: each submit queues its job
            assert batcher.waiting == len(queued)
            run.go.set()
            return await first, await asyncio.gather(*later)
        finally:
            await batcher.stop()

    first, later = asyncio.run(scenario())
    assert first == "a0" and later == ["a1", "b1", "a2", "a3", "a4", "a5", "b2"]
    # the oldest request's kind first, at most four together
    assert run.batches == [("a", [0]), ("a", [1, 2, 3, 4]), ("b", [1, 2]), ("a", [5])]


def test_a_full_queue_refuses_at_once_and_a_request_given_up_frees_its_place():
    run = Held()

    async def scenario():
        batcher = DynamicBatcher(run, max_batch=1, max_wait=0, max_queue=2)
        batcher.start()
        try:
            first = await held_first(batcher, run)
            waiting = [asyncio.ensure_future(batcher.submit("a", i)) for i in (1, 2)]
            await asyncio.sleep(0)  # one turn of the loop: both are queued
            with pytest.raises(Overloaded) as refused:
                await batcher.submit("a", 3)
            waiting[0].cancel()
            replacement = asyncio.ensure_future(batcher.submit("a", 4))
            await asyncio.sleep(0)
            assert batcher.waiting == 2
            run.go.set()
            return refused.value, await first, await waiting[1], await replacement
        finally:
            await batcher.stop()

    refused, *answers = asyncio.run(scenario())
    assert refused.retry_after >= 1 and "busy" in str(refused)
    assert answers == ["a0", "a2", "a4"]
    assert [items for _, items in run.batches] == [[0], [2], [4]]  # the cancelled one never ran


def test_a_failing_batch_runs_again_one_by_one_so_the_error_stays_with_its_request():
    run = Held()

    async def scenario():
        batcher = DynamicBatcher(run, max_batch=8, max_wait=0, max_queue=64)
        batcher.start()
        try:
            first = await held_first(batcher, run)
            later = [asyncio.ensure_future(batcher.submit("a", i)) for i in ("x", "bad", "y")]
            await asyncio.sleep(0)  # one turn of the loop: all three are queued
            run.go.set()
            return [await first, *await asyncio.gather(*later, return_exceptions=True)]
        finally:
            await batcher.stop()

    answers = asyncio.run(scenario())
    assert answers[:2] == ["a0", "ax"] and answers[3] == "ay"
    assert isinstance(answers[2], ValueError)
    assert [items for _, items in run.batches] == [[0], ["x", "bad", "y"], ["x"], ["bad"], ["y"]]
