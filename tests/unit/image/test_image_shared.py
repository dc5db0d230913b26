"""Shared work: one task per key while any caller waits, cancelled and cleaned up when none does."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from cri_py.image.shared import SharedWork, all_or_none, to_the_end


class Work:
    def __init__(self) -> None:
        self.started = 0
        self.cleaned = False
        self.release = asyncio.Event()

    async def run(self) -> str:
        self.started += 1
        try:
            await self.release.wait()
            return "done"
        finally:
            await asyncio.sleep(0.05)  # clean-up that itself takes a while
            self.cleaned = True


def test_callers_share_one_run() -> None:
    async def scenario() -> None:
        shared: SharedWork[str] = SharedWork()
        work = Work()
        callers = [asyncio.ensure_future(shared.join("k", work.run)) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert shared.waiters("k") == 3
        work.release.set()
        assert await asyncio.gather(*callers) == ["done"] * 3
        assert work.started == 1 and len(shared) == 0

    asyncio.run(scenario())


def test_work_goes_on_while_a_caller_waits() -> None:
    async def scenario() -> None:
        shared: SharedWork[str] = SharedWork()
        work = Work()
        first = asyncio.ensure_future(shared.join("k", work.run))
        second = asyncio.ensure_future(shared.join("k", work.run))
        await asyncio.sleep(0.01)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert not work.cleaned and shared.waiters("k") == 1
        work.release.set()
        assert await second == "done"
        assert work.started == 1

    asyncio.run(scenario())


def test_the_last_caller_leaving_stops_it_and_waits_for_its_cleanup() -> None:
    async def scenario() -> None:
        shared: SharedWork[str] = SharedWork()
        work = Work()
        caller = asyncio.ensure_future(shared.join("k", work.run))
        await asyncio.sleep(0.01)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert work.cleaned  # done before the caller's cancellation went on
        assert len(shared) == 0
        # a new caller starts afresh
        again = Work()
        again.release.set()
        assert await shared.join("k", again.run) == "done"

    asyncio.run(scenario())


def test_a_deadline_counts_as_leaving() -> None:
    async def scenario() -> None:
        shared: SharedWork[str] = SharedWork()
        work = Work()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await shared.join("k", work.run)
        assert work.cleaned and len(shared) == 0

    asyncio.run(scenario())


def test_to_the_end_lets_a_thread_finish_before_the_cancellation() -> None:
    finished = threading.Event()

    def slow_write() -> None:
        time.sleep(0.2)
        finished.set()

    async def scenario() -> None:
        task = asyncio.ensure_future(to_the_end(asyncio.to_thread(slow_write)))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished.is_set()

    asyncio.run(scenario())


def test_all_or_none_stops_the_rest_at_the_first_failure() -> None:
    async def scenario() -> None:
        stopped: list[str] = []

        async def slow(name: str) -> None:
            try:
                await asyncio.sleep(10)
            finally:
                stopped.append(name)

        async def fail() -> None:
            await asyncio.sleep(0.01)
            raise ValueError("refused")

        with pytest.raises(ValueError):
            await all_or_none([slow("a"), fail(), slow("b")])
        assert sorted(stopped) == ["a", "b"]

    asyncio.run(scenario())
