"""The orphan sweep finds an exited, unreaped child, and nothing once it is reaped."""

from __future__ import annotations

import os
import time

from cri_py.oci import exits


def _state(pid: int) -> bytes:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0]


def test_an_exited_child_is_seen_until_it_is_reaped() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        deadline = time.monotonic() + 10
        while _state(pid) != b"Z":
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)
        assert pid in exits._zombie_children()
    finally:
        os.waitpid(pid, 0)
    assert pid not in exits._zombie_children()


def test_a_running_child_is_not_a_zombie() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(write)
        os.read(read, 1)  # until the parent closes its end
        os._exit(0)
    os.close(read)
    try:
        assert pid not in exits._zombie_children()
    finally:
        os.close(write)
        os.waitpid(pid, 0)
