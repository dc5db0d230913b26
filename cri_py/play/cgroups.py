"""The pod-level cgroup kubelet makes before the sandbox (cgroupfs driver, cgroup v1).

kubelet's pod container manager creates /kubepods[/<qos>]/pod<uid> and puts the pod's totals
on it (ResourceConfigForPod): CPU shares from the requests, and for Guaranteed pods (Burstable
ones when every container declares that limit) the CFS quota and the memory limit. The
runtime then creates the sandbox's and containers' cgroups inside it. On cgroup v2 or the
systemd driver play leaves the cgroup to the runtime.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from cri_py.play import resources
from cri_py.play.quantity import milli_value, value

CGROUP_ROOT = "/sys/fs/cgroup"


@dataclass(frozen=True)
class PodCgroupConfig:
    cpu_shares: int
    cpu_quota: int | None  # microseconds per period; None: not enforced at pod level
    cpu_period: int | None
    memory_limit: int | None  # bytes; None: not enforced at pod level


def pod_cgroup_config(pod: Any) -> PodCgroupConfig:
    """ResourceConfigForPod with CFS quota enforced and the default 100 ms period."""
    requests, limits = resources.pod_totals(pod)
    containers = [*pod.spec.containers, *(pod.spec.init_containers or [])]
    cpu_declared = all(resources.container_limits(c).get("cpu", Fraction(0)) > 0 for c in containers)
    memory_declared = all(resources.container_limits(c).get("memory", Fraction(0)) > 0 for c in containers)
    shares = resources.milli_cpu_to_shares(milli_value(requests.get("cpu", Fraction(0))))
    quota = resources.milli_cpu_to_quota(milli_value(limits.get("cpu", Fraction(0))), resources.QUOTA_PERIOD)
    memory = value(limits.get("memory", Fraction(0)))
    qos = resources.qos_class(pod)
    if qos == "Guaranteed":
        return PodCgroupConfig(shares, quota, resources.QUOTA_PERIOD, memory)
    if qos == "Burstable":
        return PodCgroupConfig(
            shares,
            quota if cpu_declared else None,
            resources.QUOTA_PERIOD if cpu_declared else None,
            memory if memory_declared else None,
        )
    return PodCgroupConfig(resources.MIN_SHARES, None, None, None)


def is_cgroup_v1(root: str = CGROUP_ROOT) -> bool:
    return os.path.isdir(os.path.join(root, "memory")) and os.path.isdir(os.path.join(root, "cpu"))


def _write(path: str, number: int) -> None:
    with open(path, "w") as handle:
        handle.write(str(number))


def create_pod_cgroup(parent: str, config: PodCgroupConfig, root: str = CGROUP_ROOT) -> None:
    """Make `parent` (/kubepods/...) in the cpu and memory hierarchies with the pod's limits."""
    relative = parent.strip("/")
    cpu = os.path.join(root, "cpu", relative)
    memory = os.path.join(root, "memory", relative)
    os.makedirs(cpu, exist_ok=True)
    os.makedirs(memory, exist_ok=True)
    _write(os.path.join(cpu, "cpu.shares"), config.cpu_shares)
    if config.cpu_period is not None:
        _write(os.path.join(cpu, "cpu.cfs_period_us"), config.cpu_period)
    if config.cpu_quota:
        _write(os.path.join(cpu, "cpu.cfs_quota_us"), config.cpu_quota)
    if config.memory_limit:
        _write(os.path.join(memory, "memory.limit_in_bytes"), config.memory_limit)
