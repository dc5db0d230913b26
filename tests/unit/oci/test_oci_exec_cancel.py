"""An exec whose request ends (deadline, client gone) while the runtime is still being started
leaves nothing: asyncio would kill the runtime alone there, and the command it started (in the
runtime's process group) would run on in the container."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cri_py.oci import exec as exec_module
from cri_py.oci.exec import ExecProcess, ExecRuntime
from tests.unit.sleepers import kill_left_sleepers, sleepers

# `runc exec --detach` in small: the command (a sleep of the given length) starts in the
# runtime's group, then the pid file; a terminal asked for is never sent
FAKE_RUNTIME = """#!/bin/sh
while [ "$1" != "--pid-file" ]; do shift; done
sleep {seconds} &
echo $! > "$2"
"""


def stand_in_runtime(tmp_path: Path, seconds: int) -> ExecRuntime:
    runtime = tmp_path / "fake-runtime"
    runtime.write_text(FAKE_RUNTIME.format(seconds=seconds))
    runtime.chmod(0o755)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return ExecRuntime(binary=str(runtime), global_args=(), sandbox_pids=False, scratch=scratch)


def test_an_exec_cancelled_while_its_runtime_starts_leaves_no_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    how = stand_in_runtime(tmp_path, 3573)

    async def in_place(func: Callable[..., Any], /, *args: Any) -> Any:
        return func(*args)

    # the spec file written in place, not by a thread: the loop steps to the start are counted
    monkeypatch.setattr(exec_module.asyncio, "to_thread", in_place)

    async def cancel_after(steps: int) -> tuple[bool, list[int]]:
        call = asyncio.ensure_future(ExecProcess.start(how, "c" * 64, {"args": ["true"]}, stdin=False))
        for _ in range(steps):
            await asyncio.sleep(0)
        # the loop stands still meanwhile, as on a busy daemon: the runtime starts the command
        time.sleep(0.2)  # noqa: ASYNC251 - blocking on purpose
        call.cancel()
        ended, _ = await asyncio.wait({call}, timeout=15)
        if ended and not call.cancelled() and call.exception() is None:
            await call.result().close()  # it had started before the cancel: the caller's to end
        left = await kill_left_sleepers(3573, grace=2.0)
        await asyncio.gather(call, return_exceptions=True)
        return bool(ended), left

    try:
        for steps in range(14):
            ended, left = asyncio.run(cancel_after(steps))
            assert ended, f"cancelled after {steps} loop steps, the exec never ended"
            assert left == [], f"cancelled after {steps} loop steps, the command ran on"
    finally:
        for pid in sleepers(3573):
            os.kill(pid, 9)


def test_an_exec_cancelled_after_its_runtime_exited_leaves_no_command(tmp_path: Path) -> None:
    """The runtime is done, the command runs, and the request ends while the terminal (or the
    pid file) is still awaited: the command is killed as well."""
    how = stand_in_runtime(tmp_path, 3574)

    async def cancelled_while_awaiting_the_terminal() -> list[int]:
        call = asyncio.ensure_future(
            ExecProcess.start(how, "c" * 64, {"args": ["true"], "terminal": True}, stdin=False)
        )
        deadline = time.monotonic() + 10
        while not sleepers(3574):  # the runtime has started the command
            assert time.monotonic() < deadline, "the stand-in runtime never started its command"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # and exited: the daemon waits for the terminal now
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        assert call.cancelled()
        return await kill_left_sleepers(3574, grace=2.0)

    try:
        assert asyncio.run(cancelled_while_awaiting_the_terminal()) == []
    finally:
        for pid in sleepers(3574):
            os.kill(pid, 9)
