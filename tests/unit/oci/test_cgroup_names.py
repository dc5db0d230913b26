"""Container cgroup names as kubelet's CRI stats merge and cAdvisor's CRI-O handler read them,
and the empty cgroup a pod without an infra process gets for cAdvisor."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cri_py.oci import cgroups
from cri_py.oci.cgroups import CADVISOR_PREFIX, cgroup_relpath, container_cgroups_path

CID = "0123456789abcdef" * 4


def kubelet_id(cgroup: str) -> str:
    """pkg/kubelet/stats extractIDFromCgroupPath (v1.36): the last path component; of a name
    ending in `.scope`, what follows its last "-"."""
    name = cgroup.rstrip("/").rsplit("/", 1)[-1]
    if name.endswith(".scope"):
        name = name.removesuffix(".scope").split("-")[-1]
    return name


def cadvisor_crio_claims(cgroup: str) -> bool:
    """cAdvisor v0.56 container/crio CanHandleAndAccept: a name starting with `crio` (not
    `crio-conmon`) holding a 64-character lowercase hex id."""
    name = cgroup.rsplit("/", 1)[-1]
    if name.startswith("crio-conmon") or not name.startswith("crio") or name.endswith(".mount"):
        return False
    return re.search(r"[a-z0-9]{64}", name) is not None


@pytest.mark.parametrize(
    ("parent", "driver"),
    [("/kubepods/burstable/pod1", "cgroupfs"), ("kubepods-burstable-pod1.slice", "systemd")],
)
def test_cadvisor_names_are_claimed_by_its_crio_handler_and_matched_by_kubelet(
    parent: str, driver: str
) -> None:
    relpath = cgroup_relpath(container_cgroups_path(parent, CID, driver, CADVISOR_PREFIX), driver)
    assert relpath.endswith(f"/crio-{CID}.scope")
    assert cadvisor_crio_claims(relpath)
    assert kubelet_id(relpath) == CID


def test_default_names_stay_cri_pys_own() -> None:
    # no handler labels them without the inspect API, so no merge could use another name
    assert container_cgroups_path("/kubepods/pod1", CID, "cgroupfs") == f"/kubepods/pod1/cri-py-{CID}"
    assert not cadvisor_crio_claims(f"/kubepods/pod1/cri-py-{CID}")


@pytest.fixture
def v1_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cgroup v1 layout: cpu and cpuacct are links to one hierarchy."""
    for name in ("cpu,cpuacct", "memory", "pids", "freezer"):
        (tmp_path / name).mkdir()
    (tmp_path / "cpu").symlink_to("cpu,cpuacct")
    (tmp_path / "cpuacct").symlink_to("cpu,cpuacct")
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", tmp_path)
    return tmp_path


def test_an_empty_cgroup_is_made_only_under_existing_parents_and_removed(v1_root: Path) -> None:
    for hierarchy in ("cpu,cpuacct", "memory", "pids"):  # kubelet made the pod's cgroup there
        (v1_root / hierarchy / "kubepods" / "pod1").mkdir(parents=True)
    relpath = f"kubepods/pod1/crio-{CID}.scope"
    cgroups.make_empty_cgroup(relpath)
    cgroups.make_empty_cgroup(relpath)  # again: no error
    for hierarchy in ("cpu,cpuacct", "memory", "pids"):
        assert (v1_root / hierarchy / relpath).is_dir()
    assert not (v1_root / "freezer" / "kubepods").exists()  # no parent made where none was
    cgroups.remove_cgroup(relpath)
    for hierarchy in ("cpu,cpuacct", "memory", "pids"):
        assert not (v1_root / hierarchy / relpath).exists()
        assert (v1_root / hierarchy / "kubepods" / "pod1").is_dir()  # the parent is kubelet's
