"""Background work with an owner: every task the daemon starts belongs to one `TaskOwner`.

Work that must outlive the request that started it (a create kubelet gave up on, a stop that
must not be half done, an exit watcher) runs as a task of the daemon's owner instead of a
loose `asyncio.create_task` or `asyncio.shield`: a client going away cancels only its wait,
and shutdown cancels and awaits all of it before the store closes (trio's nurseries, without
one failure cancelling the siblings: these tasks are independent of each other).

`SingleFlight` runs one task per key: a retry that arrives while the work runs waits for the
same task (a second StopPodSandbox must not run a second CNI DEL beside the first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Generic, TypeVar

from cri_py.errors import DeadlineExceeded

log = logging.getLogger(__name__)

T = TypeVar("T")


class TaskOwner:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, work: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        """Start `work` as an owned task; its failure is logged unless someone awaits it."""
        if self._closed:
            work.close()
            raise RuntimeError("the daemon is shutting down")
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    async def shielded(self, work: Coroutine[Any, Any, T], name: str | None = None) -> T:
        """Run `work` to its end even if the caller is cancelled (the caller stops waiting)."""
        return await asyncio.shield(self.spawn(work, name))

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not self._closed:
            # retrieved here: a caller that awaited it has seen it already
            log.debug("background task %s ended with %r", task.get_name(), task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        """Cancel everything still running and wait until it has ended."""
        self._closed = True
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


class SingleFlight(Generic[T]):
    """At most one owned task per key; callers with the same key share its result."""

    def __init__(self, owner: TaskOwner) -> None:
        self._owner = owner
        self._running: dict[str, asyncio.Task[T]] = {}

    def running(self, key: str) -> bool:
        return key in self._running

    async def run(self, key: str, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        task = self._running.get(key)
        if task is None:
            task = self._owner.spawn(work(), name=key)
            self._running[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        return await asyncio.shield(task)

    def _done(self, key: str, task: asyncio.Task[T]) -> None:
        if self._running.get(key) is task:
            del self._running[key]


class KeyedLocks:
    """One lock per key (an object id), kept exactly as long as someone holds or awaits it:
    a caller arriving while others queue gets their lock, never a fresh one beside it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


async def within(seconds: float, work: Coroutine[Any, Any, T], what: str) -> T:
    """Run `work` with a time budget of its own (teardown does not inherit a request's
    deadline); running out is DeadlineExceeded, which kubelet understands as such."""
    try:
        async with asyncio.timeout(seconds):
            return await work
    except TimeoutError as exc:
        raise DeadlineExceeded(f"{what} did not finish in {seconds:g} s") from exc
