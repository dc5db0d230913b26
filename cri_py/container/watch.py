"""Container exits: a watcher per container waits on its conmon's pidfd, then records the exit
that conmon wrote, through the store's transition (so it is published like any change).

StopContainer waits on the `exited` event set here instead of polling the runtime. A start
that is still in flight when the exit is seen is awaited first: the container then goes
CREATED -> RUNNING -> EXITED, and its events say STARTED before STOPPED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from cri_py.container.model import ContainerRecord
from cri_py.container.state import ContainerState, exit_reason
from cri_py.container.store import ContainerStore
from cri_py.errors import NotFound
from cri_py.oci import exits
from cri_py.oci.registry import RuntimeSet
from cri_py.tasks import TaskOwner

log = logging.getLogger(__name__)

# how long a container whose monitor died may take to go after SIGKILL
UNMONITORED_KILL_WAIT_S = 10.0


class ExitWatcher:
    def __init__(
        self, store: ContainerStore, runtimes: RuntimeSet, tasks: TaskOwner, persist_dir: Path
    ) -> None:
        self._store = store
        self._runtimes = runtimes
        self._tasks = tasks
        self._persist_dir = persist_dir
        self._exited: dict[str, asyncio.Event] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._cleanups: dict[str, asyncio.Task[None]] = {}
        self._starting: dict[str, asyncio.Future[None]] = {}

    def exited(self, cid: str) -> asyncio.Event:
        return self._exited.setdefault(cid, asyncio.Event())

    def watching(self, cid: str) -> bool:
        task = self._watchers.get(cid)
        return task is not None and not task.done()

    def watch(self, rec: ContainerRecord) -> None:
        """Watch a created container's monitor (idempotent)."""
        if self.watching(rec.id):
            return
        self.exited(rec.id)
        task = self._tasks.spawn(self._wait_exit(rec.id, rec.conmon_pid), name=f"watch-{rec.id[:12]}")
        self._watchers[rec.id] = task
        cid = rec.id

        def done(finished: asyncio.Task[None]) -> None:
            if self._watchers.get(cid) is finished:
                del self._watchers[cid]

        task.add_done_callback(done)

    @contextlib.contextmanager
    def starting(self, cid: str) -> Iterator[asyncio.Future[None]]:
        """Mark a StartContainer in flight: an exit seen meanwhile is recorded after it."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._starting[cid] = future
        try:
            yield future
        finally:
            del self._starting[cid]
            future.set_result(None)

    async def _wait_exit(self, cid: str, conmon_pid: int) -> None:
        rec = self._store.current(cid)
        if rec is not None:
            await self._runtimes.get(rec.runtime_handler).wait_exit(cid, conmon_pid)
        await self.record_exit(cid)

    async def record_exit(self, cid: str) -> None:
        """Persist what conmon recorded of a container whose monitor has exited."""
        start = self._starting.get(cid)
        if start is not None:
            await asyncio.shield(start)
        rec = self._store.current(cid)
        if rec is None:
            return
        if rec.state in (ContainerState.CREATED, ContainerState.RUNNING):
            runtime = self._runtimes.get(rec.runtime_handler)
            info = runtime.exit_status(rec.id, self._persist_dir / rec.id)
            message = ""
            if info is None:
                # conmon died without writing its file (killed, say): the status is lost, and
                # the container may still run, unmonitored: it is stopped, not left running
                # while reported exited (kubelet then starts the next attempt beside it)
                killed = await self._stop_unmonitored(rec)
                code, finished, oom = (137 if killed else 255), time.time_ns(), False
                message = "its monitor (conmon) died without an exit status" + (
                    "; the container was killed" if killed else ""
                )
                log.warning("container %s: %s", rec.id, message)
            else:
                code, finished, oom = info.exit_code, info.finished_at_ns, info.oom_killed
            # the exit file's ctime comes from the kernel's coarse clock (a tick behind ours):
            # a command that ends at once must still not finish before it started
            finished = max(finished, rec.started_at)
            with contextlib.suppress(NotFound):  # removed meanwhile
                rec = self._store.transition(
                    rec,
                    ContainerState.EXITED,
                    exit_code=code,
                    finished_at=finished,
                    reason=exit_reason(code, oom),
                    message=message,
                )
        self.exited(rec.id).set()
        self.spawn_cleanup(rec)

    async def _stop_unmonitored(self, rec: ContainerRecord) -> bool:
        """Kill a container whose conmon is gone; True if its process was still running."""
        if not rec.pid or not exits.process_alive(rec.pid) or not _in_container_cgroup(rec.pid, rec.id):
            return False  # gone (its pid may name another process by now)
        runtime = self._runtimes.get(rec.runtime_handler)
        with contextlib.suppress(Exception):
            await runtime.kill(rec.id, int(signal.SIGKILL), all_processes=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(exits.wait_pid_exit(rec.pid), UNMONITORED_KILL_WAIT_S)
        return True

    def spawn_cleanup(self, rec: ContainerRecord) -> None:
        """The runtime forgets an exited container (runc removes its cgroup); nothing waits."""
        if rec.deleted or rec.id in self._cleanups:
            return
        cid = rec.id

        async def cleanup() -> None:
            with contextlib.suppress(Exception):
                await self._runtimes.get(rec.runtime_handler).delete(cid)
                current = self._store.current(cid)
                if current is not None:
                    self._store.update(current, deleted=True)

        task = self._tasks.spawn(cleanup(), name=f"cleanup-{cid[:12]}")
        self._cleanups[cid] = task
        task.add_done_callback(
            lambda t: self._cleanups.pop(cid, None) if self._cleanups.get(cid) is t else None
        )

    async def forget(self, cid: str) -> None:
        """The container is being destroyed: let its cleanup finish, stop watching it."""
        cleanup = self._cleanups.get(cid)
        if cleanup is not None:
            await asyncio.wait({cleanup})  # without cancelling it if we are
        watcher = self._watchers.pop(cid, None)
        if watcher is not None:
            watcher.cancel()
        self._exited.pop(cid, None)


def _in_container_cgroup(pid: int, cid: str) -> bool:
    """Is `pid` in the container's cgroup (its id is in the cgroup's name with either driver)?"""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return cid in f.read()
    except OSError:
        return False
