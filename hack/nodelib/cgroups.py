"""The node's cgroup root (kubelet's cgroupRoot) in every hierarchy of this host."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")


def hierarchies() -> list[Path]:
    """Mounted cgroup hierarchies (v1 controllers, the named systemd one, the v2 unified one)."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype in ("cgroup", "cgroup2"):
                found.append(Path(fields[4]))
    return sorted(set(found))


def create_root(name: str) -> None:
    """kubelet wants its cgroupRoot to exist; cpuset children need cpus and mems to be usable."""
    for hierarchy in hierarchies():
        path = hierarchy / name.lstrip("/")
        path.mkdir(exist_ok=True)
        if (hierarchy / "cpuset.cpus").exists():
            for key in ("cpuset.cpus", "cpuset.mems"):
                if not (path / key).read_text().strip():
                    (path / key).write_text((hierarchy / key).read_text())


def cgroups_under(name: str) -> list[Path]:
    """Every cgroup at or below the root, deepest first (the order to remove them)."""
    found = []
    for hierarchy in hierarchies():
        root = hierarchy / name.lstrip("/")
        if root.is_dir():
            found += [root, *(p for p in root.rglob("*") if p.is_dir())]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def pids_under(name: str) -> set[int]:
    pids: set[int] = set()
    for cgroup in cgroups_under(name):
        with contextlib.suppress(OSError, ValueError):
            pids |= {int(p) for p in (cgroup / "cgroup.procs").read_text().split()}
    pids.discard(os.getpid())
    return pids


def kill_under(name: str) -> None:
    for pid in pids_under(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def remove_root(name: str) -> list[str]:
    """rmdir every cgroup below and at the root; returns the ones that would not go."""
    stuck = []
    for cgroup in cgroups_under(name):
        try:
            cgroup.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            stuck.append(f"{cgroup}: {exc.strerror}")
    return stuck
