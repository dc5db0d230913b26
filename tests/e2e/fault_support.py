"""Helpers for the fault tests: a daemon that died where it was made to, and everything a
removed pod could leave behind that the daemon fixture's own check does not look at."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.e2e.daemon import E2E_BRIDGE, Daemon


def wait_died(daemon: Daemon, failpoint: str, timeout: float = 30.0) -> None:
    """The daemon killed itself at `failpoint` (SIGKILL, as a crash would)."""
    assert daemon.proc is not None
    try:
        code = daemon.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the daemon did not die at {failpoint}") from None
    assert code == -9, f"the daemon exited with {code}, not SIGKILL"
    assert f"failpoint {failpoint} reached" in daemon.log_text()
    if daemon.channel is not None:
        daemon.channel.close()
        daemon.channel = None
    daemon.proc = None


def restart_disarmed(daemon: Daemon) -> None:
    daemon.env.pop("CRI_PY_FAILPOINTS", None)
    daemon.start()


def db_rows(daemon: Daemon) -> dict[str, int]:
    db = sqlite3.connect(daemon.root / "state.db")
    try:
        return {t: int(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in ("pods", "containers")}
    finally:
        db.close()


def veths_on_bridge() -> list[str]:
    """Host ends of pod veths on the suite's bridge (the suite runs alone: they are ours)."""
    out = subprocess.run(
        ["ip", "-o", "link", "show", "master", E2E_BRIDGE], capture_output=True, text=True, check=False
    ).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line.strip()]


def traces(daemon: Daemon) -> list[str]:
    """What is left of pods, containers and pulls: database rows, pins, bundles, rootfs
    directories, image store temporaries, veths. Empty once everything was removed."""
    found = [f"{n} rows in {t}" for t, n in db_rows(daemon).items() if n]
    for directory in (
        daemon.run_dir / "pods",
        daemon.run_dir / "containers",
        daemon.run_dir / "netns",
        daemon.run_dir / "nsfs",
        daemon.root / "containers",
        daemon.root / "images" / "ingest",
        daemon.root / "trash",  # removed containers' trees wait there for a worker thread
        daemon.run_dir / "trash",
    ):
        if directory.is_dir():
            found += [f"file {p}" for p in directory.iterdir()]
    rootfs = daemon.root / "rootfs"
    if rootfs.is_dir():
        found += [f"rootfs {p}" for p in rootfs.iterdir() if p.name not in ("l", "empty")]
    layers = daemon.root / "images" / "layers"
    if layers.is_dir():
        found += [f"layer temporary {p}" for p in layers.iterdir() if p.name.startswith(".tmp")]
    found += [f"veth {v}" for v in veths_on_bridge()]
    return found


def remove_all_and_check(daemon: Daemon) -> None:
    """Remove every pod and container through the CRI, as kubelet would, then find nothing."""
    daemon.remove_everything()
    deadline = time.monotonic() + 10
    left = traces(daemon)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)  # conmon and the exit watchers settle
        left = traces(daemon)
    assert left == [], "left behind:\n" + "\n".join(left)


def rpc_died(call: Any) -> None:
    """The RPC's daemon died under it: the client sees UNAVAILABLE (or an abrupt end)."""
    import grpc

    try:
        call()
    except grpc.RpcError as exc:
        assert exc.code() in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.UNKNOWN,
            grpc.StatusCode.INTERNAL,
        ), exc
    else:
        raise AssertionError("the RPC succeeded: its failpoint was not reached")


def processes(daemon: Daemon, cmdline: bytes) -> list[int]:
    """Processes with this command line in the daemon's own cgroup parent."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes() == cmdline:
                if f"cri-py-e2e-{daemon.workdir.name}" in (proc / "cgroup").read_text():
                    found.append(int(proc.name))
        except OSError:
            continue
    return found
