"""kubelet's retry contract for creates (cri-o#2984).

A create runs as an owned task keyed by the object's name. A retry that arrives while it is
still running waits for the same task; a result that finished after its client gave up is
kept, unclaimed, and handed to the next request with that name instead of an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from cri_py.tasks import TaskOwner


class CreateCoalescer:
    def __init__(self, owner: TaskOwner) -> None:
        self._owner = owner
        self._running: dict[str, asyncio.Task[str]] = {}
        self._unclaimed: dict[str, str] = {}

    def claim(self, key: str) -> str | None:
        """An id created for `key` whose requester never got it."""
        return self._unclaimed.pop(key, None)

    def forget(self, object_id: str) -> None:
        for key, value in list(self._unclaimed.items()):
            if value == object_id:
                del self._unclaimed[key]

    def running(self, key: str) -> bool:
        return key in self._running

    async def run(self, key: str, create: Callable[[], Coroutine[Any, Any, str]]) -> str:
        task = self._running.get(key)
        if task is None:
            task = self._owner.spawn(create(), name=f"create {key}")
            self._running[key] = task
            task.add_done_callback(lambda t: self._finished(key, t))
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            # the client is gone: whenever the work ends, its result waits for a retry
            if task.done():
                self._park(key, task)
            else:
                task.add_done_callback(lambda t: self._park(key, t))
            raise
        self._unclaimed.pop(key, None)
        return result

    def _finished(self, key: str, task: asyncio.Task[str]) -> None:
        if self._running.get(key) is task:
            del self._running[key]

    def _park(self, key: str, task: asyncio.Task[str]) -> None:
        if not task.cancelled() and task.exception() is None:
            self._unclaimed[key] = task.result()
