"""Finding the `sleep` processes a test's hanging stand-in started, by their unusual length."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path


def sleepers(seconds: int) -> list[int]:
    """Live `sleep <seconds>` processes (a zombie's command line reads empty)."""
    wanted = b"sleep\0" + str(seconds).encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes() == wanted:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


async def kill_left_sleepers(seconds: int, grace: float) -> list[int]:
    """The `sleep <seconds>` processes still alive after `grace` seconds (a killed process takes
    a moment to go), killed then so that nothing outlives the test; returns their pids."""
    deadline = time.monotonic() + grace
    while sleepers(seconds) and time.monotonic() < deadline:  # noqa: ASYNC110 - other processes, nothing to wait on
        await asyncio.sleep(0.02)
    left = sleepers(seconds)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left
