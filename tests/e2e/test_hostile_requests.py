"""Requests that try to write outside their place, or store what Kubernetes never would, are
refused with INVALID_ARGUMENT before anything exists; what kubelet and critest send still runs."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_py.api import api_pb2
from tests.e2e import registry_fixtures
from tests.e2e.registry_fixtures import TestRegistry
from tests.e2e.test_pod_support import container_config, create_container, pod_config, pull, run_pod, start

registry = registry_fixtures.registry


@pytest.fixture
def cri(cri_factory: Any, registry: TestRegistry) -> Any:
    daemon = cri_factory(registry.daemon_overrides())
    pull(daemon, registry.busybox)
    return daemon


def rows(cri: Any, table: str) -> int:
    db = sqlite3.connect(cri.root / "state.db")
    try:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


def container_traces(cri: Any) -> list[str]:
    """Whatever a CreateContainer leaves: records, bundles, rootfs directories."""
    found = [f"{rows(cri, 'containers')} container rows"] if rows(cri, "containers") else []
    for directory in (cri.run_dir / "containers", cri.root / "rootfs", cri.root / "containers"):
        if directory.is_dir():
            found += [str(p) for p in directory.iterdir() if p.name not in ("l", "empty")]
    return found


def refused(call: Any, field: str) -> str:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    details = err.value.details() or ""
    assert field in details, details
    return details


def test_log_path_leaving_the_log_directory_creates_nothing(
    cri: Any, registry: TestRegistry, tmp_path: Path
) -> None:
    log_dir = tmp_path / "pods" / "logs"
    pcfg = pod_config(log_directory=str(log_dir))
    pod_id = run_pod(cri, pcfg)
    image = registry.busybox

    def create(log_path: str) -> Any:
        ccfg = container_config(image, ["sleep", "60"], log_path=log_path)
        return lambda: create_container(cri, pod_id, pcfg, ccfg)

    # ../../tmp/x.log from <tmp>/pods/logs names <tmp>/tmp/x.log
    refused(create("../../tmp/x.log"), "config.log_path")
    refused(create(str(tmp_path / "abs.log")), "config.log_path")
    assert not (tmp_path / "tmp").exists() and not (tmp_path / "abs.log").exists()
    assert not log_dir.exists()
    assert container_traces(cri) == []

    # symlinks planted in the log directory, pointing out of it
    outside = tmp_path / "outside"
    outside.mkdir()
    log_dir.mkdir(parents=True)
    (log_dir / "c").symlink_to(outside)
    (log_dir / "d").symlink_to("../..")
    (log_dir / "e.log").symlink_to(outside / "e.log")
    for planted in ("c/0.log", "d/outside/0.log", "e.log"):
        details = refused(create(planted), "config.log_path")
        assert "outside" in details
    assert list(outside.iterdir()) == []
    assert container_traces(cri) == []

    # a symlink that stays inside is followed, and the log lands inside
    (log_dir / "real").mkdir()
    (log_dir / "alias").symlink_to("real")
    ccfg = container_config(image, ["sh", "-c", "echo inside; sleep 60"], log_path="alias/0.log")
    cid = create_container(cri, pod_id, pcfg, ccfg)
    st = cri.runtime.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=cid), timeout=10).status
    assert st.log_path == str(log_dir / "real" / "0.log")
    start(cri, cid)
    assert list(outside.iterdir()) == []


def test_paths_inside_the_container_stay_inside(cri: Any, registry: TestRegistry, tmp_path: Path) -> None:
    pcfg = pod_config()
    pod_id = run_pod(cri, pcfg)
    ccfg = container_config(registry.busybox, ["true"], working_dir="/../../etc")
    refused(lambda: create_container(cri, pod_id, pcfg, ccfg), "config.working_dir")
    ccfg = container_config(registry.busybox, ["true"])
    ccfg.mounts.append(api_pb2.Mount(container_path="../../../etc", host_path=str(tmp_path)))
    refused(lambda: create_container(cri, pod_id, pcfg, ccfg), "config.mounts[0].container_path")
    assert container_traces(cri) == []


def test_oversized_or_malformed_metadata_is_refused_naming_the_field(
    cri: Any, registry: TestRegistry
) -> None:
    pods_dir = cri.run_dir / "pods"
    before = sorted(pods_dir.iterdir()) if pods_dir.is_dir() else []
    for field, change in (
        ("config.metadata.name", lambda c: setattr(c.metadata, "name", "p" * 10_000)),
        ("config.metadata.namespace", lambda c: setattr(c.metadata, "namespace", "ns/../..")),
        ("config.metadata.uid", lambda c: setattr(c.metadata, "uid", "../../x")),
        ("config.metadata.attempt", lambda c: setattr(c.metadata, "attempt", 2**32 - 1)),
        ("config.annotations", lambda c: c.annotations.update({"big": "x" * (256 * 1024)})),
        ("config.hostname", lambda c: setattr(c, "hostname", "a\n6.6.6.6 kubernetes.default")),
    ):
        cfg = pod_config()
        change(cfg)
        refused(lambda cfg=cfg: run_pod(cri, cfg), field)
    assert not cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
    assert rows(cri, "pods") == 0
    assert (sorted(pods_dir.iterdir()) if pods_dir.is_dir() else []) == before

    # what a cluster sends at Kubernetes' limits runs
    long_name = ".".join(["a" * 63] * 3 + ["b" * 61])
    cfg = pod_config(name=long_name)
    cfg.metadata.namespace = "n" * 63
    cfg.metadata.uid = str(uuid.uuid4())
    cfg.hostname = "a" * 63
    cfg.annotations["big"] = "x" * (256 * 1024 - 100)
    pod_id = run_pod(cri, cfg)
    ccfg = container_config(registry.busybox, ["true"], name="c" * 63)
    create_container(cri, pod_id, cfg, ccfg)
    items = cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
    assert [p.metadata.name for p in items] == [long_name]
