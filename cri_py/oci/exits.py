"""Waiting for a monitor (conmon) to exit and reading what it recorded.

conmon is not our child after its double fork (unless the daemon is a child subreaper), so
`waitpid` is not generally available: a pidfd becomes readable when the process exits,
whoever its parent is. Where we are the parent (subreaper), we also reap it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


def become_child_subreaper() -> bool:
    """Make orphaned descendants (daemonized conmon) our children, so we can reap them."""
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0


def is_child_subreaper() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    flag = ctypes.c_int(0)
    if libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) != 0:
        return False
    return flag.value != 0


def _stat_fields(pid: int) -> list[bytes] | None:
    """/proc/<pid>/stat after the command name (field 3 onwards), or None if it is gone."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def process_alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    # a zombie is dead for our purposes; field 3 is the state letter
    return fields is not None and bool(fields) and fields[0] not in (b"Z", b"X")


def start_time(pid: int) -> int:
    """When the process started (clock ticks after boot; field 22); 0 if it is gone.
    With the pid it names one process: a reused pid has a later start time."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else 0
    except (IndexError, ValueError):
        return 0


def same_process(pid: int, started: int) -> bool:
    """Is `pid` alive and still the process that started at `started` (0: not recorded)?"""
    fields = _stat_fields(pid)
    if not fields or fields[0] in (b"Z", b"X"):
        return False
    return started == 0 or (len(fields) > 19 and fields[19] == str(started).encode())


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


async def wait_pid_exit(pid: int) -> None:
    """Return once `pid` has exited (immediately if it is gone already)."""
    if pid <= 0:
        return
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not done.done():
            done.set_result(None)

    try:
        loop.add_reader(fd, ready)
        try:
            # the process may be a zombie child already: readable at once
            await done
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)
    _reap(pid)


async def wait_child_status(pid: int) -> int | None:
    """Wait for a process we adopted (as subreaper) to exit and return its exit code
    (128+signal for a signal death); None if it is not our child after all."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        fd = -1
    if fd >= 0:
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(fd, ready)
        try:
            await exited
        finally:
            loop.remove_reader(fd)
            os.close(fd)
    try:
        _, status = os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 - it has exited: no wait
    except ChildProcessError:
        return None
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


@dataclass(frozen=True)
class ExitInfo:
    exit_code: int
    finished_at_ns: int
    oom_killed: bool


def read_exit(exit_file: Path, oom_file: Path) -> ExitInfo | None:
    """What conmon recorded: status without newline; the file's ctime is the finish time."""
    try:
        st = exit_file.stat()
        text = exit_file.read_text().strip()
    except FileNotFoundError:
        return None
    try:
        code = int(text)
    except ValueError:
        code = -1
    return ExitInfo(code, st.st_ctime_ns, oom_file.exists())


def _zombie_children() -> set[int]:
    # the sweep runs every 2 s on the event loop, and every conmon is our child (we are its
    # subreaper): reading each child's /proc stat is 110 file reads at kubelet's max-pods. One
    # waitid that does not reap says whether any child has exited at all.
    try:
        if os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            return set()
    except ChildProcessError:
        return set()
    found: set[int] = set()
    me = os.getpid()
    try:
        tids = os.listdir(f"/proc/{me}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{me}/task/{tid}/children") as f:
                pids = [int(p) for p in f.read().split()]
        except (OSError, ValueError):
            continue
        for pid in pids:
            if not process_alive(pid) and os.path.exists(f"/proc/{pid}"):
                found.add(pid)
    return found


async def reap_orphans(interval: float = 2.0) -> None:
    """As a child subreaper we inherit orphans (runsc helpers, exited pause processes).

    asyncio's child watcher reaps the processes it started within microseconds of their
    exit; only a zombie seen on two sweeps in a row is an orphan nobody else will wait for.
    """
    seen: set[int] = set()
    while True:
        await asyncio.sleep(interval)
        now = _zombie_children()
        for pid in now & seen:
            _reap(pid)
        seen = now - seen
