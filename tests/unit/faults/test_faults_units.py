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
