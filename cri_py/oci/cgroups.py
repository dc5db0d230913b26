"""cgroup naming, CRI resources as OCI resources, and reading usage back (v1 and v2)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cri_py.api import api_pb2

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTAINER_PREFIX = "cri-py"
# the names cAdvisor's CRI-O handler claims start with it (metrics/inspect_api.py)
CADVISOR_PREFIX = "crio"


def container_cgroups_path(parent: str, cid: str, driver: str, prefix: str = CONTAINER_PREFIX) -> str:
    """The OCI cgroupsPath: a path for cgroupfs, `slice:prefix:name` for systemd.

    The cgroup is `<prefix>-<cid>.scope` with systemd (runc has systemd make the scope) and
    `<prefix>-<cid>` with cgroupfs, except where cAdvisor is to know it: kubelet merges its
    CRI stats with cAdvisor's per container by the cgroup's last path component, which must be
    the bare id or end in `-<id>.scope` (pkg/kubelet/stats extractIDFromCgroupPath), while
    cAdvisor's CRI-O handler takes only names that start with `crio`: so `crio-<cid>.scope`
    with either driver."""
    if driver == "systemd":
        slice_name = parent.rsplit("/", 1)[-1] if parent else "system.slice"
        if not slice_name.endswith(".slice"):
            slice_name = "system.slice"
        return f"{slice_name}:{prefix}:{cid}"
    parent = "/" + parent.strip("/") if parent.strip("/") else ""
    suffix = ".scope" if prefix == CADVISOR_PREFIX else ""
    return f"{parent}/{prefix}-{cid}{suffix}"


def cgroup_relpath(cgroups_path: str, driver: str) -> str:
    """Where the runtime put the cgroup, relative to each hierarchy's root."""
    if driver == "systemd":
        slice_name, prefix, name = cgroups_path.split(":")
        # systemd nests "a-b-c.slice" as a.slice/a-b.slice/a-b-c.slice
        parts = slice_name.removesuffix(".slice").split("-")
        nested = ["-".join(parts[: i + 1]) + ".slice" for i in range(len(parts))]
        return "/".join(nested) + f"/{prefix}-{name}.scope"
    return cgroups_path.strip("/")


def is_cgroup_v2() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def own_oom_score_adj() -> int:
    try:
        return int(Path("/proc/self/oom_score_adj").read_text())
    except (OSError, ValueError):
        return 0


def clamp_oom_score_adj(requested: int, floor: int) -> int:
    """Without CAP_SYS_RESOURCE nothing below our own value can be set; runc would die."""
    return min(1000, max(requested, floor, -1000))


def hugetlb_available(cgroup_root: Path = Path("/sys/fs/cgroup")) -> bool:
    """Can the runtime set hugetlb limits: a v1 hugetlb hierarchy, or hugetlb on a pure v2 host.

    A hybrid host with hugetlb only on its cgroup2 mount (this one) has no usable controller.
    """
    if (cgroup_root / "hugetlb").is_dir():
        return True
    try:
        return "hugetlb" in (cgroup_root / "cgroup.controllers").read_text().split()
    except OSError:
        return False


def oci_resources(res: api_pb2.LinuxContainerResources | None, hugetlb: bool = True) -> dict[str, Any]:
    """The OCI `linux.resources` for CRI resources.

    Without a hugetlb controller the hugepage limits are dropped, as containerd
    (tolerate_missing_hugetlb_controller) and CRI-O do: kubelet sends a zero limit for every
    page size, and runc would refuse the whole container over it.
    """
    out: dict[str, Any] = {}
    if res is None:
        return out
    cpu: dict[str, Any] = {}
    if res.cpu_shares:
        cpu["shares"] = res.cpu_shares
    if res.cpu_quota:
        cpu["quota"] = res.cpu_quota
    if res.cpu_period:
        cpu["period"] = res.cpu_period
    if res.cpuset_cpus:
        cpu["cpus"] = res.cpuset_cpus
    if res.cpuset_mems:
        cpu["mems"] = res.cpuset_mems
    if cpu:
        out["cpu"] = cpu
    memory: dict[str, Any] = {}
    if res.memory_limit_in_bytes:
        memory["limit"] = res.memory_limit_in_bytes
        # no swap beyond the limit unless asked (kubelet's default)
        memory["swap"] = res.memory_swap_limit_in_bytes or res.memory_limit_in_bytes
    elif res.memory_swap_limit_in_bytes:
        memory["swap"] = res.memory_swap_limit_in_bytes
    if memory:
        out["memory"] = memory
    if res.hugepage_limits and hugetlb:
        out["hugepageLimits"] = [{"pageSize": h.page_size, "limit": h.limit} for h in res.hugepage_limits]
    if res.unified:
        out["unified"] = dict(res.unified)
    return out


@dataclass(frozen=True)
class CgroupUsage:
    timestamp_ns: int
    cpu_usage_ns: int
    memory_usage: int
    working_set: int
    rss: int
    page_faults: int
    major_page_faults: int
    memory_limit: int  # 0 = unlimited
    pids: int


def read_int(path: Path) -> int:
    """The first number of a cgroup file; 0 when it is absent or not a number."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def read_kv(path: Path) -> dict[str, int]:
    """A cgroup `key value` file (memory.stat, ...); {} when it is absent."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[key] = int(value)
    return out


_UNLIMITED = 1 << 62


def read_usage(relpath: str) -> CgroupUsage | None:
    """Usage of one cgroup; None when it does not exist (container gone)."""
    import time

    now = time.time_ns()
    if is_cgroup_v2():
        base = CGROUP_ROOT / relpath
        if not base.is_dir():
            return None
        cpu = read_kv(base / "cpu.stat").get("usage_usec", 0) * 1000
        mem = read_kv(base / "memory.stat")
        usage = read_int(base / "memory.current")
        limit_text = ""
        with contextlib.suppress(OSError):
            limit_text = (base / "memory.max").read_text().strip()
        limit = int(limit_text) if limit_text.isdigit() else 0
        ws = max(0, usage - mem.get("inactive_file", 0))
        return CgroupUsage(
            now, cpu, usage, ws, mem.get("anon", 0), mem.get("pgfault", 0), mem.get("pgmajfault", 0),
            limit, read_int(base / "pids.current"),
        )  # fmt: skip
    cpuacct = CGROUP_ROOT / "cpuacct" / relpath
    memory = CGROUP_ROOT / "memory" / relpath
    if not cpuacct.is_dir() and not memory.is_dir():
        return None
    mem = read_kv(memory / "memory.stat")
    usage = read_int(memory / "memory.usage_in_bytes")
    limit = read_int(memory / "memory.limit_in_bytes")
    ws = max(0, usage - mem.get("total_inactive_file", 0))
    return CgroupUsage(
        now,
        read_int(cpuacct / "cpuacct.usage"),
        usage,
        ws,
        mem.get("total_rss", 0),
        mem.get("total_pgfault", 0),
        mem.get("total_pgmajfault", 0),
        0 if limit >= _UNLIMITED else limit,
        read_int(CGROUP_ROOT / "pids" / relpath / "pids.current"),
    )


def _hierarchies() -> list[Path]:
    """The root of each mounted hierarchy (v1: one per controller mount, links resolved)."""
    if is_cgroup_v2():
        return [CGROUP_ROOT]
    roots: dict[Path, Path] = {}
    for entry in sorted(CGROUP_ROOT.iterdir()):
        if entry.is_dir():
            roots.setdefault(entry.resolve(), entry)
    return list(roots.values())


def make_empty_cgroup(relpath: str) -> None:
    """A cgroup with no process, in every hierarchy that has its parent (kubelet makes a
    pod's cgroup in each it manages): where nothing would make the parent, nothing is made,
    so nothing of it outlives `remove_cgroup`."""
    for root in _hierarchies():
        target = root / relpath.strip("/")
        if target.parent.is_dir():
            with contextlib.suppress(FileExistsError):
                target.mkdir()


def cgroup_has_processes(relpath: str) -> bool:
    """Whether a process is still in the cgroup, or a cgroup under it, in any hierarchy."""
    if not relpath.strip("/"):
        return False
    for root in _hierarchies():
        target = root / relpath.strip("/")
        for dirpath, _dirs, _files in os.walk(target):
            with contextlib.suppress(OSError):
                if Path(dirpath, "cgroup.procs").read_bytes().strip():
                    return True
    return False


def remove_cgroup(relpath: str) -> None:
    """Remove an (empty) cgroup from every hierarchy, deepest first; ignore what's absent."""
    if not relpath.strip("/"):
        return
    for root in _hierarchies():
        target = root / relpath.strip("/")
        if not target.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(target), key=lambda t: -len(t[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
