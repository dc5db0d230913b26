"""Fault handling without a daemon: failpoints, runtime calls that hang, full disks."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from cri_py import failpoints
from cri_py.errors import DeadlineExceeded, Internal, InvalidArgument
from cri_py.oci.process import run
from cri_py.server.errors import disk_full, status_code_for
from tests.unit.sleepers import sleepers


def test_failpoints_are_inert_unless_armed() -> None:
    assert failpoints.parse("") == frozenset()
    assert failpoints.parse(" a, b ,,") == {"a", "b"}
    if not failpoints.ARMED:
        assert failpoints.hit is failpoints._inert
    assert failpoints.KNOWN >= {failpoints.POD_SAVED_BEFORE_NETNS, failpoints.LAYER_UNPACK_MIDWAY}


def test_an_armed_failpoint_kills_the_process_hard(tmp_path: Path) -> None:
    script = (
        "import atexit, sys\n"
        "from cri_py import failpoints\n"
        "atexit.register(lambda: open(sys.argv[1], 'w').write('atexit ran'))\n"
        "failpoints.hit(failpoints.POD_STOP_AFTER_CNI_DEL)\n"
        "failpoints.hit(failpoints.CONTAINER_REMOVE_MIDWAY)\n"
        "print('not reached')\n"
    )
    marker = tmp_path / "marker"
    env = {**os.environ, failpoints.ENV: failpoints.CONTAINER_REMOVE_MIDWAY}
    done = subprocess.run(
        [sys.executable, "-c", script, str(marker)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -9
    assert f"failpoint {failpoints.CONTAINER_REMOVE_MIDWAY} reached" in done.stderr
    assert "not reached" not in done.stdout and not marker.exists()  # no atexit, no flush: a crash


def test_unknown_failpoints_are_named() -> None:
    script = "from cri_py import failpoints; print(failpoints.unknown())"
    env = {**os.environ, failpoints.ENV: f"nope,{failpoints.LAYER_UNPACK_MIDWAY}"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['nope']"


def test_a_hanging_runtime_call_is_killed_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child"
    script = tmp_path / "hang"
    script.write_text(f"#!/bin/sh\nsleep 3593 &\necho $! > {pidfile}\nwait\n")
    script.chmod(0o755)
    began = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="hang start did not finish in 0.5 s"):
        asyncio.run(run([str(script), "--root=/x", "start", "id"], time_limit=0.5))
    assert time.monotonic() - began < 5
    child = int(pidfile.read_text())
    for _ in range(100):
        if not os.path.exists(f"/proc/{child}") or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]:
            break
        time.sleep(0.02)
    else:
        raise AssertionError("the runtime's child outlived the killed call")


def test_full_disks_are_resource_exhausted() -> None:
    assert disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise Internal("cannot mount the rootfs") from inner
    except Internal as wrapped:
        assert status_code_for(wrapped) == grpc.StatusCode.RESOURCE_EXHAUSTED
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
    assert disk_full(full)
    assert not disk_full(OSError(errno.EACCES, "Permission denied"))
    assert status_code_for(InvalidArgument("x")) == grpc.StatusCode.INVALID_ARGUMENT


def test_a_runtime_call_cancelled_at_any_point_ends_with_all_its_processes(tmp_path: Path) -> None:
    """A request that ends (deadline, client gone) while its runtime call is still being
    started: what the wrapper started already goes with it, and the call ends (asyncio kills
    the wrapper alone there, then waits for pipes its children hold open)."""
    script = tmp_path / "wrapper"
    script.write_text("#!/bin/sh\nsleep 3587 &\nwait\n")
    script.chmod(0o755)

    async def cancel_after(steps: int) -> None:
        call = asyncio.ensure_future(run([str(script)], time_limit=60))
        for _ in range(steps):
            await asyncio.sleep(0)
        # the loop stands still meanwhile, as on a busy daemon: the wrapper starts its child
        time.sleep(0.2)  # noqa: ASYNC251 - blocking on purpose
        call.cancel()
        ended, _ = await asyncio.wait({call}, timeout=10)
        survivors = sleepers(3587)
        for pid in survivors:
            os.kill(pid, 9)
        await asyncio.gather(call, return_exceptions=True)
        assert ended, f"cancelled after {steps} loop steps, the call never ended"
        assert not survivors, f"cancelled after {steps} loop steps, the wrapper's child ran on"
        assert call.cancelled()

    for steps in range(6):
        asyncio.run(cancel_after(steps))


def test_a_runtime_call_is_bounded_by_the_daemon_without_any_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UpdateContainerResources from a client that set no deadline: the runtime call still
    ends, at the daemon's own limit, as DEADLINE_EXCEEDED, with its wrapper's children."""
    from cri_py.config.model import RuntimeHandler
    from cri_py.oci import runtime as oci_runtime

    script = tmp_path / "runc-hang"
    script.write_text("#!/bin/sh\nsleep 3581 &\nwait\n")
    script.chmod(0o755)
    monkeypatch.setattr(oci_runtime, "CALL_LIMIT", 0.5)
    handler = RuntimeHandler(name="hang", path=script)
    runtime = oci_runtime.OciRuntime(handler, conmon=Path("/bin/false"), run_dir=tmp_path / "run")
    began = time.monotonic()
    try:
        with pytest.raises(DeadlineExceeded, match="runc-hang update did not finish in 0.5 s") as caught:
            asyncio.run(runtime.update("c1", {"cpu": {"shares": 512}}))
        assert time.monotonic() - began < 5
        assert status_code_for(caught.value) == grpc.StatusCode.DEADLINE_EXCEEDED
        assert sleepers(3581) == []
    finally:
        for pid in sleepers(3581):
            os.kill(pid, 9)
