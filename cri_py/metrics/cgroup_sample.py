"""One reading of a container's cgroup counters, cgroup v1 (one hierarchy per controller) or v2.

The fields are what cAdvisor's container_* series need; absent files read as 0 (a controller
not mounted, a container that just exited).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cri_py.oci.cgroups import CGROUP_ROOT, read_int, read_kv

_TICK_NS = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") or 100)


@dataclass(frozen=True)
class CgroupSample:
    cpu_total_ns: int = 0
    cpu_user_ns: int = 0
    cpu_system_ns: int = 0
    cfs_periods: int = 0
    cfs_throttled_periods: int = 0
    cfs_throttled_ns: int = 0
    memory_usage: int = 0
    memory_max_usage: int = 0
    working_set: int = 0
    rss: int = 0
    cache: int = 0
    swap: int = 0
    mapped_file: int = 0
    failcnt: int = 0
    pgfault: int = 0
    pgmajfault: int = 0
    oom_kills: int = 0
    processes: int = 0
    threads: int = 0
    threads_max: int = 0  # 0 = unlimited


def _lines(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    except OSError:
        return 0


def read_sample(relpath: str, root: Path = CGROUP_ROOT) -> CgroupSample | None:
    """The counters of the cgroup at `relpath`; None when it does not exist."""
    relpath = relpath.strip("/")
    if (root / "cgroup.controllers").exists():
        return _read_v2(root / relpath)
    return _read_v1(root, relpath)


def _read_v1(root: Path, relpath: str) -> CgroupSample | None:
    cpuacct, cpu, memory, pids = (root / c / relpath for c in ("cpuacct", "cpu", "memory", "pids"))
    if not cpuacct.is_dir() and not memory.is_dir():
        return None
    ticks = read_kv(cpuacct / "cpuacct.stat")
    throttle = read_kv(cpu / "cpu.stat")
    mem = read_kv(memory / "memory.stat")
    usage = read_int(memory / "memory.usage_in_bytes")
    pids_max = (pids / "pids.max").read_text().strip() if (pids / "pids.max").exists() else "max"
    return CgroupSample(
        cpu_total_ns=read_int(cpuacct / "cpuacct.usage"),
        cpu_user_ns=ticks.get("user", 0) * _TICK_NS,
        cpu_system_ns=ticks.get("system", 0) * _TICK_NS,
        cfs_periods=throttle.get("nr_periods", 0),
        cfs_throttled_periods=throttle.get("nr_throttled", 0),
        cfs_throttled_ns=throttle.get("throttled_time", 0),
        memory_usage=usage,
        memory_max_usage=read_int(memory / "memory.max_usage_in_bytes"),
        working_set=max(0, usage - mem.get("total_inactive_file", 0)),
        rss=mem.get("total_rss", 0),
        cache=mem.get("total_cache", 0),
        swap=mem.get("total_swap", 0),
        mapped_file=mem.get("total_mapped_file", 0),
        failcnt=read_int(memory / "memory.failcnt"),
        pgfault=mem.get("total_pgfault", 0),
        pgmajfault=mem.get("total_pgmajfault", 0),
        oom_kills=read_kv(memory / "memory.oom_control").get("oom_kill", 0),
        processes=_lines(pids / "cgroup.procs") if pids.is_dir() else _lines(cpuacct / "cgroup.procs"),
        threads=read_int(pids / "pids.current"),
        threads_max=int(pids_max) if pids_max.isdigit() else 0,
    )


def _read_v2(base: Path) -> CgroupSample | None:
    if not base.is_dir():
        return None
    cpu = read_kv(base / "cpu.stat")
    mem = read_kv(base / "memory.stat")
    usage = read_int(base / "memory.current")
    pids_max = (base / "pids.max").read_text().strip() if (base / "pids.max").exists() else "max"
    return CgroupSample(
        cpu_total_ns=cpu.get("usage_usec", 0) * 1000,
        cpu_user_ns=cpu.get("user_usec", 0) * 1000,
        cpu_system_ns=cpu.get("system_usec", 0) * 1000,
        cfs_periods=cpu.get("nr_periods", 0),
        cfs_throttled_periods=cpu.get("nr_throttled", 0),
        cfs_throttled_ns=cpu.get("throttled_usec", 0) * 1000,
        memory_usage=usage,
        memory_max_usage=read_int(base / "memory.peak"),
        working_set=max(0, usage - mem.get("inactive_file", 0)),
        rss=mem.get("anon", 0),
        cache=mem.get("file", 0),
        swap=read_int(base / "memory.swap.current"),
        mapped_file=mem.get("file_mapped", 0),
        failcnt=read_kv(base / "memory.events").get("max", 0),
        pgfault=mem.get("pgfault", 0),
        pgmajfault=mem.get("pgmajfault", 0),
        oom_kills=read_kv(base / "memory.events").get("oom_kill", 0),
        processes=_lines(base / "cgroup.procs"),
        threads=read_int(base / "pids.current"),
        threads_max=int(pids_max) if pids_max.isdigit() else 0,
    )
