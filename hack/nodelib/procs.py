"""Start, find and stop the node's component processes (pid files under the node directory)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from nodelib.components import REPO, Component
from nodelib.layout import Layout
from nodelib.network import in_netns


def start(layout: Layout, component: Component) -> int:
    """Run a component in the node's network namespace, in the background, logging to logs/."""
    argv = [*in_netns(layout)]
    if component.mount_setup:
        # a mount namespace of its own, a copy of the host's: shared mounts stay shared
        script = "set -e\n" + "\n".join(component.mount_setup) + '\nexec "$@"\n'
        argv += [
            "unshare",
            "--mount",
            "--propagation",
            "unchanged",
            "--",
            "/bin/sh",
            "-c",
            script,
            component.name,
        ]
    argv += component.argv
    layout.logs.mkdir(parents=True, exist_ok=True)
    layout.pids.mkdir(parents=True, exist_ok=True)
    with open(layout.log(component.name), "ab") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=REPO, start_new_session=True
        )
    layout.pidfile(component.name).write_text(f"{proc.pid}\n")
    # the Popen object is dropped: `down` finds the process by its pid file, in any later process
    proc.returncode = 0
    return proc.pid


def pid_of(layout: Layout, name: str) -> int | None:
    """The component's pid if it runs (its command line names the node directory), else None."""
    try:
        pid = int(layout.pidfile(name).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    if str(layout.dir).encode() not in cmdline or _zombie(pid):
        return None
    return pid


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not Path(f"/proc/{pid}").exists() or _zombie(pid):
            _reap(pid)
            return True
        time.sleep(0.05)
    return False


def stop(layout: Layout, name: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> bool:
    """Signal a component and wait for it to end (SIGKILL after `timeout`); False if it was not running."""
    pid = pid_of(layout, name)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    if not wait_gone(pid, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_gone(pid, 10)
    with contextlib.suppress(FileNotFoundError):
        layout.pidfile(name).unlink()
    return True


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        wait_gone(pid, 10)


def running_binaries(name: str) -> list[int]:
    """Processes running an executable of that name (anyone's: only to decide what to leave)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.path.basename(os.readlink(f"/proc/{entry}/exe")) == name:
                    found.append(int(entry))
    return found
