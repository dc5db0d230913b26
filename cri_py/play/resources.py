"""Resources as kubelet computes them on cgroup v1: QoS class, CPU shares/quota/period,
memory limit, OOM score adjustment, hugepage limits, and the pod-level totals."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from cri_py.api import api_pb2
from cri_py.play.node import NodeInfo
from cri_py.play.quantity import milli_value, parse_quantity, value

MIN_SHARES = 2
MAX_SHARES = 262144
SHARES_PER_CPU = 1024
QUOTA_PERIOD = 100000  # microseconds; kubelet's default --cpu-cfs-quota-period
MIN_QUOTA_PERIOD = 1000
GUARANTEED_OOM_SCORE_ADJ = -997
BESTEFFORT_OOM_SCORE_ADJ = 1000
HUGEPAGES_PREFIX = "hugepages-"

ResourceList = dict[str, Fraction]


def resource_list(raw: dict[str, str] | None, path: str) -> ResourceList:
    return {name: parse_quantity(text, f"{path}.{name}") for name, text in (raw or {}).items()}


def container_requests(container: Any) -> ResourceList:
    return resource_list(container.resources.requests if container.resources else None, "resources.requests")


def container_limits(container: Any) -> ResourceList:
    return resource_list(container.resources.limits if container.resources else None, "resources.limits")


def milli_cpu_to_shares(milli_cpu: int) -> int:
    if milli_cpu == 0:
        return MIN_SHARES
    return max(MIN_SHARES, min(MAX_SHARES, milli_cpu * SHARES_PER_CPU // 1000))


def milli_cpu_to_quota(milli_cpu: int, period: int) -> int:
    if milli_cpu == 0:
        return 0
    return max(MIN_QUOTA_PERIOD, milli_cpu * period // 1000)


def qos_class(pod: Any) -> str:
    """ComputePodQOS: Guaranteed, Burstable or BestEffort from cpu and memory of all containers."""
    requests: ResourceList = {}
    limits: ResourceList = {}
    guaranteed = True
    for container in [*pod.spec.containers, *(pod.spec.init_containers or [])]:
        for name, amount in container_requests(container).items():
            if name in ("cpu", "memory") and amount > 0:
                requests[name] = requests.get(name, Fraction(0)) + amount
        found = set()
        for name, amount in container_limits(container).items():
            if name in ("cpu", "memory") and amount > 0:
                found.add(name)
                limits[name] = limits.get(name, Fraction(0)) + amount
        if not {"cpu", "memory"} <= found:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and all(limits.get(n) == amount for n, amount in requests.items()):
        if len(requests) == len(limits):
            return "Guaranteed"
    return "Burstable"


def oom_score_adj(pod: Any, container: Any, node: NodeInfo) -> int:
    """GetContainerOOMScoreAdjust."""
    if pod.spec.priority_class_name == "system-node-critical":
        return GUARANTEED_OOM_SCORE_ADJ
    qos = qos_class(pod)
    if qos == "Guaranteed":
        return GUARANTEED_OOM_SCORE_ADJ
    if qos == "BestEffort":
        return BESTEFFORT_OOM_SCORE_ADJ
    memory_request = value(container_requests(container).get("memory", Fraction(0)))
    adjust = 1000 - (1000 * memory_request) // max(node.memory_bytes, 1)
    if adjust < 1000 + GUARANTEED_OOM_SCORE_ADJ:
        return 1000 + GUARANTEED_OOM_SCORE_ADJ
    if adjust == BESTEFFORT_OOM_SCORE_ADJ:
        return adjust - 1
    return adjust


def linux_resources(
    cpu_request: Fraction | None, cpu_limit: Fraction, memory_limit: Fraction
) -> api_pb2.LinuxContainerResources:
    """calculateLinuxResources with CFS quota on, cgroup v1."""
    if cpu_request is None:
        # a request left out defaults to the limit
        shares = milli_cpu_to_shares(milli_value(cpu_limit))
    else:
        shares = milli_cpu_to_shares(milli_value(cpu_request))
    resources = api_pb2.LinuxContainerResources(cpu_shares=shares)
    memory = value(memory_limit)
    if memory != 0:
        resources.memory_limit_in_bytes = memory
    resources.cpu_period = QUOTA_PERIOD
    resources.cpu_quota = milli_cpu_to_quota(milli_value(cpu_limit), QUOTA_PERIOD)
    return resources


def hugepage_limits(container: Any, node: NodeInfo) -> list[api_pb2.HugepageLimit]:
    """Every page size of the node limited to 0 unless the container asks for it."""
    wanted: dict[str, int] = {}
    for name, amount in container_limits(container).items():
        if name.startswith(HUGEPAGES_PREFIX):
            page = parse_quantity(name.removeprefix(HUGEPAGES_PREFIX), f"resources.limits.{name}")
            size = value(page)
            unit = next(
                (
                    u
                    for u, s in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10))
                    if size >= s and size % s == 0
                ),
                "B",
            )
            scale = {"GB": 1 << 30, "MB": 1 << 20, "KB": 1 << 10, "B": 1}[unit]
            wanted[f"{size // scale}{unit}"] = value(amount)
    return [api_pb2.HugepageLimit(page_size=size, limit=wanted.get(size, 0)) for size in node.hugepage_sizes]


def container_resources(pod: Any, container: Any, node: NodeInfo) -> api_pb2.LinuxContainerResources:
    """generateLinuxContainerResources (no MemoryQoS, NoSwap)."""
    requests = container_requests(container)
    limits = container_limits(container)
    resources = linux_resources(
        requests.get("cpu"), limits.get("cpu", Fraction(0)), limits.get("memory", Fraction(0))
    )
    resources.oom_score_adj = oom_score_adj(pod, container, node)
    resources.hugepage_limits.extend(hugepage_limits(container, node))
    if node.swap_controller:
        # NoSwap on cgroup v1: memory+swap capped at the memory limit
        resources.memory_swap_limit_in_bytes = resources.memory_limit_in_bytes
    return resources


def _add(into: ResourceList, more: ResourceList) -> None:
    for name, amount in more.items():
        into[name] = into.get(name, Fraction(0)) + amount


def _max(into: ResourceList, more: ResourceList) -> None:
    for name, amount in more.items():
        if name not in into or amount > into[name]:
            into[name] = amount


def is_sidecar(container: Any) -> bool:
    """An init container with restartPolicy Always keeps running beside the app containers."""
    return bool(container.restart_policy == "Always")


def _aggregate(pod: Any, amounts: Any) -> ResourceList:
    """PodRequests/PodLimits: app containers and sidecars summed; each regular init container
    counted with the sidecars started before it, the largest of those taken."""
    total: ResourceList = {}
    for container in pod.spec.containers:
        _add(total, amounts(container))
    sidecars: ResourceList = {}
    init_peak: ResourceList = {}
    for container in pod.spec.init_containers or []:
        if is_sidecar(container):
            _add(total, amounts(container))
            _add(sidecars, amounts(container))
            current = dict(sidecars)
        else:
            current = dict(amounts(container))
            _add(current, sidecars)
        _max(init_peak, current)
    _max(total, init_peak)
    return total


def pod_totals(pod: Any) -> tuple[ResourceList, ResourceList]:
    """PodRequests and PodLimits without overhead."""
    return _aggregate(pod, container_requests), _aggregate(pod, container_limits)


def sandbox_resources(pod: Any) -> api_pb2.LinuxContainerResources:
    requests, limits = pod_totals(pod)
    return linux_resources(
        requests.get("cpu"), limits.get("cpu", Fraction(0)), limits.get("memory", Fraction(0))
    )


def sandbox_overhead(pod: Any) -> api_pb2.LinuxContainerResources:
    overhead = resource_list(pod.spec.overhead, "spec.overhead")
    if not pod.spec.overhead:
        return api_pb2.LinuxContainerResources()
    cpu = overhead.get("cpu", Fraction(0))
    return linux_resources(cpu, cpu, overhead.get("memory", Fraction(0)))
