"""Starting a created container through runc's exec FIFO, without starting a runc process.

`runc create` leaves the container's init blocked opening `<root>/<id>/exec.fifo` for writing.
`runc start` opens it for reading, reads the "0" the init then writes, waits for the end of file
(the init's exec of the user's process closes its end) and removes the FIFO: runc tells a
created container from a running one by whether the FIFO is there. Doing the same here saves
a Go process start per StartContainer (~9 of ~12 ms on a 2-core machine).

Only runc's state layout (`state.json` beside `exec.fifo`) takes this path; for any other
runtime `release` answers False and the runtime's own `start` runs. The spec cri-py writes
has no hooks, so nothing runc's start would run is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
from pathlib import Path

from cri_py.errors import Internal
from cri_py.oci.exits import process_alive

FIFO = "exec.fifo"
STATE = "state.json"
# how often a start that got nothing yet asks whether the init is still there (runc: 100 ms)
LIVENESS_INTERVAL = 0.1


def fifo_of(state_dir: Path) -> Path | None:
    """The exec FIFO of a created container in runc's layout, or None."""
    fifo = state_dir / FIFO
    try:
        if not stat.S_ISFIFO(fifo.stat().st_mode):
            return None
    except FileNotFoundError:
        return None
    return fifo if (state_dir / STATE).is_file() else None


def _init_pid(state_dir: Path) -> int:
    try:
        return int(json.loads((state_dir / STATE).read_bytes()).get("init_process_pid", 0))
    except (OSError, ValueError, TypeError):
        return 0


async def release(state_dir: Path) -> bool:
    """Let the created container's init exec the user's process; False if the container is
    not in runc's layout or not created (no FIFO: the runtime's own start says what is wrong).
    Raises Internal when the init died before it was released, as `runc start` fails then."""
    fifo = fifo_of(state_dir)
    if fifo is None:
        return False
    try:
        # non-blocking: the open must not wait for a writer that may be gone
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        got = await _read_to_end(fd, state_dir)
    finally:
        os.close(fd)
    if not got:
        raise Internal("container process is already dead")
    with contextlib.suppress(FileNotFoundError):
        fifo.unlink()
    return True


async def _read_to_end(fd: int, state_dir: Path) -> bytes:
    """What the init writes, until it closes its end. A FIFO whose writer never came reads
    as end-of-file too, so each read waits for readiness: epoll reports nothing on such a
    FIFO until data arrives or a writer came and went."""
    loop = asyncio.get_running_loop()
    got = b""
    while True:
        ready = loop.create_future()
        loop.add_reader(fd, _wake, ready)
        try:
            await asyncio.wait_for(ready, LIVENESS_INTERVAL)
        except TimeoutError:
            if not got and not process_alive(_init_pid(state_dir)):
                # gone before it wrote; or it wrote, exec'd and exited between two looks
                return _read_now(fd)
            continue
        finally:
            loop.remove_reader(fd)
        chunk = _read_now(fd)
        if not chunk:
            return got
        got += chunk


def _wake(ready: asyncio.Future[None]) -> None:
    # the loop may call a reader again before the waiting task has run
    if not ready.done():
        ready.set_result(None)


def _read_now(fd: int) -> bytes:
    try:
        return os.read(fd, 64)
    except BlockingIOError:
        return b""
