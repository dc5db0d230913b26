"""Work shared by everyone who asks for it, and stopped when the last of them leaves.

A pull is wanted only while some client waits for it: kubelet's PullImage has no deadline
but is cancelled when the pod goes away, crictl's has one. Callers asking for the same key
join one task; a caller that is cancelled (or whose deadline passed) stops waiting, and when
it was the last one the task is cancelled and awaited, so its clean-up (partial blobs and
layers) has happened by the time the last caller's cancellation goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# how long a leaving caller waits for the cancelled work to clean up (worker threads stop at
# their next chunk); past it the work goes on unwinding alone
CLEANUP_WAIT = 30.0

Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]


def _create_task(work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    return asyncio.create_task(work, name=name)


@dataclass
class _Entry(Generic[T]):
    task: asyncio.Task[T]
    waiters: int = 0


class SharedWork(Generic[T]):
    def __init__(self, spawn: Spawn = _create_task) -> None:
        self._spawn = spawn
        self._entries: dict[str, _Entry[T]] = {}

    def waiters(self, key: str) -> int:
        entry = self._entries.get(key)
        return entry.waiters if entry is not None else 0

    def __len__(self) -> int:
        return len(self._entries)

    async def join(self, key: str, start: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """The result of the work for `key`, started by the first caller, shared by the rest."""
        entry = self._entries.get(key)
        if entry is None:
            entry = _Entry(self._spawn(start(), key))
            self._entries[key] = entry
            entry.task.add_done_callback(lambda t, k=key: self._finished(k, t))  # type: ignore[misc]
        entry.waiters += 1
        try:
            return await asyncio.shield(entry.task)
        finally:
            entry.waiters -= 1
            if entry.waiters == 0 and not entry.task.done():
                entry.task.cancel()
                if self._entries.get(key) is entry:
                    del self._entries[key]  # a new caller starts afresh, not on the cancelled one
                await settle(entry.task)

    def _finished(self, key: str, task: asyncio.Task[T]) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.task is task:
            del self._entries[key]
        if not task.cancelled():
            task.exception()  # retrieved: callers that left must not cause a warning

    async def cancel_all(self) -> None:
        entries = list(self._entries.values())
        self._entries.clear()
        for entry in entries:
            entry.task.cancel()
        await asyncio.gather(*(e.task for e in entries), return_exceptions=True)


async def settle(task: asyncio.Future[Any], limit_s: float = CLEANUP_WAIT) -> None:
    """Wait until `task` has ended, even while the caller is being cancelled (it is, when this
    runs in a `finally` after a cancellation); gives up after `limit_s` seconds.

    Its outcome is nobody's any more (the caller is unwinding for a reason of its own): an
    exception it ended with is taken here, logged at debug, so that asyncio does not report it
    as never retrieved. One that ends after `limit_s` is taken when it ends."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning("%s is still unwinding after %.0f s", task, limit_s)
            task.add_done_callback(_abandoned)
            return
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({task}, timeout=remaining)
    _abandoned(task)


def _abandoned(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.debug("%s ended after its caller left: %s: %s", task, type(exc).__name__, exc)


async def to_the_end(work: Awaitable[T]) -> T:
    """Await `work` (a thread's future, say) to its end; a cancellation that arrives meanwhile
    is raised only after it has finished, so nothing it writes lands after the caller left."""
    future = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await settle(future)
        raise


async def all_or_none(work: list[Awaitable[T]]) -> list[T]:
    """Run concurrently; the first failure (or the caller's cancellation) cancels the rest,
    which are awaited before it is raised."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
