"""Memory of a CRI daemon together with the monitor processes it started (conmon, shims).

A process counts when it is the daemon, descends from it, or is a monitor whose command line
names the daemon's directories, and it shares the daemon's mount namespace: containers
(pause, sleep) live in namespaces of their own and are not the runtime's overhead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MONITOR_NAMES = ("conmon", "containerd-shim-runc-v2", "containerd-shim", "containerd-shim-runc-v1")


@dataclass(frozen=True)
class Memory:
    rss_kib: int
    pss_kib: int
    processes: int
    monitors: int

    def to_dict(self) -> dict[str, int]:
        return {
            "rss_kib": self.rss_kib,
            "pss_kib": self.pss_kib,
            "processes": self.processes,
            "monitors": self.monitors,
        }


def _ppid_map() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _field_kib(text: str, name: str) -> int:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def _mnt_ns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def runtime_processes(daemon_pid: int, markers: list[str]) -> tuple[set[int], int]:
    parents = _ppid_map()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    roots = {daemon_pid}
    monitors = 0
    for pid in parents:
        comm = _read(f"/proc/{pid}/comm").strip()
        if comm in MONITOR_NAMES:
            cmdline = _read(f"/proc/{pid}/cmdline").replace("\0", " ")
            if any(marker in cmdline for marker in markers):
                roots.add(pid)
                monitors += 1
    found: set[int] = set()
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, []))
    home = _mnt_ns(daemon_pid)
    return {pid for pid in found if _mnt_ns(pid) == home}, monitors


def measure_memory(daemon_pid: int, markers: list[str]) -> Memory:
    pids, monitors = runtime_processes(daemon_pid, markers)
    rss = pss = 0
    for pid in pids:
        rss += _field_kib(_read(f"/proc/{pid}/status"), "VmRSS")
        pss += _field_kib(_read(f"/proc/{pid}/smaps_rollup"), "Pss")
    return Memory(rss, pss, len(pids), monitors)
