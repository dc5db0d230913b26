"""The pod-level cgroup: kubelet's ResourceConfigForPod, written into a stand-in cgroup tree."""

from __future__ import annotations

from pathlib import Path

from cri_py.play import volumes
from cri_py.play.cgroups import PodCgroupConfig, create_pod_cgroup, is_cgroup_v1, pod_cgroup_config
from tests.unit.play.helpers import load_pod

HEAD = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n"


def test_guaranteed_pod_gets_every_limit() -> None:
    pod = load_pod(
        HEAD + "  containers:\n  - {name: a, image: i, resources: {limits: {cpu: 500m, memory: 64Mi}}}\n"
    )
    assert pod_cgroup_config(pod) == PodCgroupConfig(512, 50000, 100000, 64 * 2**20)


def test_burstable_pod_gets_a_limit_only_when_every_container_declares_it() -> None:
    pod = load_pod(
        HEAD
        + "  initContainers:\n  - {name: i, image: i, resources: {limits: {memory: 16Mi}}}\n"
        + "  containers:\n  - {name: a, image: i, resources: {requests: {cpu: 100m}, limits: {memory: 64Mi}}}\n"
    )
    assert pod_cgroup_config(pod) == PodCgroupConfig(102, None, None, 64 * 2**20)
    unlimited = load_pod(
        HEAD
        + "  containers:\n  - {name: a, image: i, resources: {limits: {memory: 64Mi}}}\n  - {name: b, image: i}\n"
    )
    assert pod_cgroup_config(unlimited).memory_limit is None


def test_best_effort_pod_gets_minimum_shares() -> None:
    pod = load_pod(HEAD + "  containers: [{name: a, image: i}]\n")
    assert pod_cgroup_config(pod) == PodCgroupConfig(2, None, None, None)


def test_create_and_remove_in_a_cgroup_tree(tmp_path: Path) -> None:
    for controller in ("cpu", "memory", "pids"):
        (tmp_path / controller).mkdir()
    assert is_cgroup_v1(str(tmp_path)) and not is_cgroup_v1(str(tmp_path / "nope"))
    create_pod_cgroup("/kubepods/burstable/pod1", PodCgroupConfig(102, 25000, 100000, 1024), str(tmp_path))
    cpu = tmp_path / "cpu" / "kubepods" / "burstable" / "pod1"
    assert (cpu / "cpu.shares").read_text() == "102" and (cpu / "cpu.cfs_quota_us").read_text() == "25000"
    assert (
        tmp_path / "memory" / "kubepods" / "burstable" / "pod1" / "memory.limit_in_bytes"
    ).read_text() == "1024"
    # real cgroup directories vanish with rmdir; the stand-in's files have to go first
    for path in tmp_path.rglob("*.*"):
        path.unlink()
    volumes.remove_pod_cgroups("/kubepods/burstable/pod1", str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cpu", "memory", "pids"]
    assert list((tmp_path / "cpu").iterdir()) == []
