"""Starting through runc's exec FIFO: released only when the init has written and closed its
end, the FIFO removed after; a dead init is an error; other layouts are left to the runtime."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from cri_py.errors import Internal
from cri_py.oci import exec_fifo


def _state_dir(tmp_path: Path) -> Path:
    state_dir = tmp_path / "cid"
    state_dir.mkdir()
    os.mkfifo(state_dir / "exec.fifo", 0o622)
    return state_dir


def _init_is(state_dir: Path, pid: int) -> None:
    (state_dir / "state.json").write_text(json.dumps({"init_process_pid": pid}))


def _fake_init(fifo: Path, hold_s: float) -> tuple[int, int]:
    """A child that does what runc init does: block opening the FIFO for writing, write "0",
    keep its end open for `hold_s` (runc init: until its exec), exit. Returns (pid, pipe that
    says when it is past the write)."""
    said_r, said_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            fd = os.open(fifo, os.O_WRONLY)
            os.write(fd, b"0")
            os.write(said_w, b"w")
            time.sleep(hold_s)
            os.close(fd)
        finally:
            os._exit(0)
    os.close(said_w)
    return pid, said_r


def test_released_after_the_init_closes_its_end_then_the_fifo_is_gone(tmp_path: Path) -> None:
    state_dir = _state_dir(tmp_path)
    pid, said = _fake_init(state_dir / "exec.fifo", hold_s=0.3)
    _init_is(state_dir, pid)
    try:
        assert exec_fifo.fifo_of(state_dir) == state_dir / "exec.fifo"
        started = time.monotonic()
        assert asyncio.run(exec_fifo.release(state_dir)) is True
        # not before the init's end was closed (its exec, for runc)
        assert time.monotonic() - started >= 0.25
        assert os.read(said, 1) == b"w"
        assert not (state_dir / "exec.fifo").exists()
        assert exec_fifo.fifo_of(state_dir) is None
    finally:
        os.waitpid(pid, 0)
        os.close(said)


def test_an_init_that_writes_and_exits_at_once_is_started(tmp_path: Path) -> None:
    state_dir = _state_dir(tmp_path)
    pid, said = _fake_init(state_dir / "exec.fifo", hold_s=0)
    _init_is(state_dir, pid)
    try:
        assert asyncio.run(exec_fifo.release(state_dir)) is True
    finally:
        os.waitpid(pid, 0)
        os.close(said)


def test_a_dead_init_is_an_error_and_the_fifo_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exec_fifo, "LIVENESS_INTERVAL", 0.05)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # gone without ever opening the FIFO
    state_dir = _state_dir(tmp_path)
    _init_is(state_dir, pid)
    with pytest.raises(Internal, match="already dead"):
        asyncio.run(asyncio.wait_for(exec_fifo.release(state_dir), 5))
    assert (state_dir / "exec.fifo").exists()


def test_other_layouts_are_left_to_the_runtime(tmp_path: Path) -> None:
    no_state = tmp_path / "a"
    no_state.mkdir()
    os.mkfifo(no_state / "exec.fifo")
    not_a_fifo = tmp_path / "b"
    not_a_fifo.mkdir()
    (not_a_fifo / "exec.fifo").write_text("0")
    (not_a_fifo / "state.json").write_text("{}")
    for state_dir in (no_state, not_a_fifo, tmp_path / "missing"):
        assert exec_fifo.fifo_of(state_dir) is None
        assert asyncio.run(exec_fifo.release(state_dir)) is False
