"""Exit files and waiting on a process that is not necessarily our child."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

from cri_py.oci.exits import process_alive, read_exit, wait_pid_exit


def test_read_exit_file(tmp_path: Path) -> None:
    exit_file, oom = tmp_path / "exit", tmp_path / "oom"
    assert read_exit(exit_file, oom) is None
    exit_file.write_text("137")
    info = read_exit(exit_file, oom)
    assert info is not None and info.exit_code == 137 and not info.oom_killed
    assert abs(info.finished_at_ns - time.time_ns()) < 10_000_000_000
    oom.touch()
    exit_file.write_text("garbage")
    info = read_exit(exit_file, oom)
    assert info is not None and info.exit_code == -1 and info.oom_killed


def test_wait_for_an_exit_and_reap() -> None:
    proc = subprocess.Popen(["sleep", "0.2"])
    began = time.monotonic()
    assert process_alive(proc.pid)
    asyncio.run(asyncio.wait_for(wait_pid_exit(proc.pid), 5))
    assert 0.1 < time.monotonic() - began < 3
    # reaped by the waiter: no zombie left
    assert not os.path.exists(f"/proc/{proc.pid}") or not process_alive(proc.pid)
    asyncio.run(wait_pid_exit(proc.pid))  # gone already: returns at once
    assert not process_alive(-1)


def test_adopted_child_status() -> None:
    """A grandchild orphaned to us (as a subreaper) is waited for with its exit status."""
    import ctypes

    from cri_py.oci.exits import is_child_subreaper, wait_child_status

    script = "import subprocess, sys; p = subprocess.Popen(['sh', '-c', 'sleep 0.1; exit 7']); print(p.pid)"

    async def scenario() -> int | None:
        was = is_child_subreaper()
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
        try:
            done = await asyncio.to_thread(
                subprocess.run, ["python3", "-c", script], capture_output=True, text=True, check=True
            )
            out = done.stdout
            return await asyncio.wait_for(wait_child_status(int(out)), 5)
        finally:
            if not was:
                ctypes.CDLL(None).prctl(36, 0, 0, 0, 0)

    assert asyncio.run(scenario()) == 7
