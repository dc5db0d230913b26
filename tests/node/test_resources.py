"""Requests and limits land in the cgroups kubelet asks cri-py for: the pod's cgroup under its QoS
class in kubelet's cgroup root, and the container's cgroup inside it (read on the node)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.node.cluster_env import NodeEnv, container_id

CGROUP_FS = Path("/sys/fs/cgroup")
MI = 1024 * 1024


def read(path: Path) -> int:
    return int(path.read_text().split()[0])


def pod_with(name: str, resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "command": ["sleep", "600"], "resources": resources}]},
    }


def pod_cgroup(node: NodeEnv, qos_dir: str, uid: str, controller: str) -> Path:
    root = CGROUP_FS / controller / node.cluster.slot.cgroup_root.lstrip("/") / "kubepods"
    return root / qos_dir / f"pod{uid}" if qos_dir else root / f"pod{uid}"


def container_cgroup(pod_dir: Path, cid: str) -> Path:
    matches = [p for p in pod_dir.iterdir() if p.is_dir() and cid in p.name]
    assert len(matches) == 1, (pod_dir, cid, list(pod_dir.iterdir()))
    return matches[0]


@pytest.mark.parametrize(
    ("qos", "resources", "shares", "quota", "memory"),
    [
        ("Guaranteed", {"limits": {"cpu": "500m", "memory": "96Mi"}}, 512, 50000, 96 * MI),
        ("Burstable", {"requests": {"cpu": "250m", "memory": "32Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}},
         256, 100000, 128 * MI),
        ("BestEffort", {}, 2, -1, None),
    ],
    ids=["guaranteed", "burstable", "besteffort"],
)  # fmt: skip
def test_requests_and_limits_in_cgroups(
    node: NodeEnv, ns: str, qos: str, resources: dict[str, Any], shares: int, quota: int, memory: int | None
) -> None:
    name = qos.lower()
    node.create_pod(ns, pod_with(name, resources))
    pod = node.wait_running(ns, name)
    assert pod.status.qos_class == qos
    qos_dir = {"Guaranteed": "", "Burstable": "burstable", "BestEffort": "besteffort"}[qos]
    cid = container_id(pod, "app")
    for where in ("pod", "container"):
        cpu = pod_cgroup(node, qos_dir, pod.metadata.uid, "cpu")
        mem = pod_cgroup(node, qos_dir, pod.metadata.uid, "memory")
        if where == "container":
            cpu, mem = container_cgroup(cpu, cid), container_cgroup(mem, cid)
        assert read(cpu / "cpu.shares") == shares, (where, cpu)
        assert read(cpu / "cpu.cfs_quota_us") == quota, (where, cpu)
        if quota > 0:
            assert read(cpu / "cpu.cfs_period_us") == 100000
        limit = read(mem / "memory.limit_in_bytes")
        if memory is None:
            assert limit > 1 << 50, (where, limit)  # unlimited
        else:
            assert limit == memory, (where, limit)
    # the container's processes are in the container's cgroup, in every hierarchy
    pid_cgroups = node.kubectl("exec", "-n", ns, name, "--", "cat", "/proc/self/cgroup").stdout
    memory_line = next(line for line in pid_cgroups.splitlines() if line.split(":")[1] == "memory")
    expected = container_cgroup(pod_cgroup(node, qos_dir, pod.metadata.uid, "memory"), cid)
    assert memory_line.split(":", 2)[2] == "/" + str(expected.relative_to(CGROUP_FS / "memory"))
    # the container sees its own limit where tools look for it
    if memory is not None:
        inside = node.kubectl(
            "exec", "-n", ns, name, "--", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"
        )
        assert int(inside.stdout) == memory


def test_qos_cgroups_and_node_allocatable(node: NodeEnv) -> None:
    """kubelet's QoS cgroups exist in every controller, and the kubepods cgroup carries the
    node's allocatable memory as its limit."""
    root = node.cluster.slot.cgroup_root.lstrip("/")
    for controller in ("cpu", "cpuacct", "cpuset", "memory", "pids"):
        for qos in ("burstable", "besteffort"):
            assert (CGROUP_FS / controller / root / "kubepods" / qos).is_dir(), (controller, qos)
    # node allocatable is enforced on the kubepods cgroup
    allocatable = node.core.read_node(node.node_name).status.allocatable["memory"]
    assert allocatable.endswith("Ki"), allocatable
    kubepods_limit = read(CGROUP_FS / "memory" / root / "kubepods" / "memory.limit_in_bytes")
    # kubepods = capacity - reserved; allocatable also subtracts the eviction threshold (100Mi)
    assert kubepods_limit - int(allocatable[:-2]) * 1024 == 100 * MI
