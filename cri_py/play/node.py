"""What kubelet knows about its node, read once from the host (and faked in unit tests)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class NodeInfo:
    name: str  # kubelet's node name: the lower-cased hostname
    cpus: int  # allocatable CPUs (no reservations configured)
    memory_bytes: int  # machine memory capacity (MemTotal)
    hugepage_sizes: tuple[str, ...]  # "2MB", "1GB", as libcontainer names them
    swap_controller: bool  # cgroup v1 memory.memsw.* present
    resolv_conf: str | None  # the text of kubelet's --resolv-conf; None for --resolv-conf=""
    etc_hosts: str  # the host's /etc/hosts, copied for host-network pods
    cluster_domain: str = "cluster.local"
    cluster_dns: tuple[str, ...] = field(default_factory=tuple)
    host_ips: tuple[str, ...] = ("127.0.0.1",)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _mem_total() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _page_size_name(kib: int) -> str:
    # libcontainer's HugePageSizes: 2048kB -> "2MB", 1048576kB -> "1GB"
    size = kib * 1024
    for unit in ("GB", "MB", "KB"):
        scale = {"GB": 1 << 30, "MB": 1 << 20, "KB": 1 << 10}[unit]
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}B"


def _hugepage_sizes() -> tuple[str, ...]:
    # kubelet limits every page size the kernel offers to 0 unless asked; the runtimes drop
    # those limits where no hugetlb controller is usable (cri-py, containerd's
    # tolerate_missing_hugetlb_controller, CRI-O's CgroupHasHugetlb)
    try:
        names = sorted(os.listdir("/sys/kernel/mm/hugepages"))
    except OSError:
        return ()
    kibs = sorted(int(n.removeprefix("hugepages-").removesuffix("kB")) for n in names if n.endswith("kB"))
    return tuple(_page_size_name(k) for k in kibs)


def _primary_ip() -> str:
    """The preferred source address of the default route, asked of the kernel's routing table."""
    from pyroute2 import IPRoute  # only play needs it here; the daemon loads it lazily too

    try:
        with IPRoute() as ipr:
            for route in ipr.get_default_routes(family=socket.AF_INET):
                index = route.get_attr("RTA_OIF")
                for addr in ipr.get_addr(family=socket.AF_INET, index=index):
                    return str(addr.get_attr("IFA_ADDRESS"))
    except OSError:
        pass
    return "127.0.0.1"


def probe_node(
    resolv_conf: str = "/etc/resolv.conf",
    cluster_domain: str = "cluster.local",
    cluster_dns: tuple[str, ...] = (),
) -> NodeInfo:
    return NodeInfo(
        name=socket.gethostname().lower(),
        cpus=os.cpu_count() or 1,
        memory_bytes=_mem_total(),
        hugepage_sizes=_hugepage_sizes(),
        swap_controller=os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
        resolv_conf=_read(resolv_conf) if resolv_conf else None,
        etc_hosts=_read("/etc/hosts"),
        cluster_domain=cluster_domain,
        cluster_dns=cluster_dns,
        host_ips=(_primary_ip(),),
    )
