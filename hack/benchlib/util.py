"""Small process, socket and file helpers shared by the bench modules."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


class BenchError(Exception):
    """A set-up step failed; the message says which and why."""


def run(
    cmd: Sequence[str],
    *,
    input_bytes: bytes | None = None,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(list(cmd), input=input_bytes, capture_output=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise BenchError(
            f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.decode(errors='replace').strip()}"
        )
    return proc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.02) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def unix_socket_ready(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def tcp_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def mounts_under(prefix: Path) -> list[Path]:
    """Mount points at or below prefix, deepest first (the order to unmount them)."""
    found: list[Path] = []
    root = str(prefix.resolve())
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            point = line.split()[4].replace("\\040", " ")
            if point == root or point.startswith(root + "/"):
                found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount_all(prefix: Path) -> None:
    for point in mounts_under(prefix):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def pids_mentioning(text: str) -> list[int]:
    """Processes whose command line contains text (how we find shims and monitors we started)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = (
                Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry))
    return pids


def kill_and_reap(pids: Sequence[int], timeout: float = 5) -> None:
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for pid in pids:
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if _is_zombie(pid):
                break
            time.sleep(0.02)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


CGROUP_ROOT = Path("/sys/fs/cgroup")


def remove_cgroup_tree(parent: str) -> list[str]:
    """rmdir a cgroup parent and everything below it in every hierarchy; returns what would not go."""
    stuck: list[str] = []
    rel = parent.strip("/")
    if not rel:
        return stuck
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / rel
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: len(w[0]), reverse=True):
            try:
                os.rmdir(dirpath)
            except OSError:
                stuck.append(dirpath)
    return stuck


_T0 = time.monotonic()


def log(message: str) -> None:
    """Progress on stderr, each line stamped with the seconds since the bench started."""
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)
