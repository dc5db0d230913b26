"""Failed creates unwind everything they did (mounts, namespaces, processes, records), and a
daemon killed in the middle of a create cleans up on its next start."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_py.api import api_pb2
from tests.e2e import registry_fixtures
from tests.e2e.registry_fixtures import TestRegistry
from tests.e2e.test_pod_support import container_config, create_container, pod_config, pull, run_pod

# the session fixture, under its own name so pytest finds it here
registry = registry_fixtures.registry


@pytest.fixture
def cri(cri_factory: Any, registry: TestRegistry) -> Any:
    daemon = cri_factory(registry.daemon_overrides())
    pull(daemon, registry.busybox)
    return daemon


def _mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


def test_failed_infra_start_unwinds_the_pod(cri: Any) -> None:
    cfg = pod_config(pid=api_pb2.POD)
    cfg.linux.sysctls["kernel.no_such_sysctl"] = "1"
    with pytest.raises(grpc.RpcError) as err:
        run_pod(cri, cfg)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert not cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
    assert _mounts_under(str(cri.run_dir)) == []
    # the name is free again
    cfg.linux.sysctls.clear()
    assert run_pod(cri, cfg)


def test_failed_container_create_unwinds(cri: Any, registry: TestRegistry, tmp_path: Path) -> None:
    cfg = pod_config()
    pod_id = run_pod(cri, cfg)
    before = _mounts_under(str(cri.root))
    ccfg = container_config(registry.busybox, ["/no/such/binary"])
    # a missing source is made (as containerd and CRI-O do); a dangling symlink is refused
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    ccfg.mounts.append(api_pb2.Mount(container_path="/data", host_path=str(tmp_path / "dangling")))
    with pytest.raises(grpc.RpcError) as err:
        create_container(cri, pod_id, cfg, ccfg)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _mounts_under(str(cri.root)) == before
    assert not cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
    # the runtime refusing the spec: its words reach the client, nothing stays behind
    with pytest.raises(grpc.RpcError) as err:
        create_container(cri, pod_id, cfg, container_config(registry.busybox, ["/no/such/binary"]))
    assert err.value.code() == grpc.StatusCode.INTERNAL and "/no/such/binary" in (err.value.details() or "")
    assert _mounts_under(str(cri.root)) == before
    assert not cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers


def test_half_done_creates_are_unwound_at_start(cri: Any, registry: TestRegistry) -> None:
    cfg = pod_config()
    pod_id = run_pod(cri, cfg)
    cid = create_container(cri, pod_id, cfg, container_config(registry.busybox, ["sleep", "60"]))
    cri.stop(signal.SIGKILL)
    # what a daemon killed inside CreateContainer and RunPodSandbox leaves in its store
    db = sqlite3.connect(cri.root / "state.db")
    with db:
        for table, rec_id in (("containers", cid), ("pods", pod_id)):
            (data,) = db.execute(f"SELECT data FROM {table} WHERE id = ?", (rec_id,)).fetchone()
            rec = json.loads(data)
            rec["state"] = "creating"
            db.execute(f"UPDATE {table} SET data = ? WHERE id = ?", (json.dumps(rec), rec_id))
    db.close()
    cri.start()
    assert not cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
    assert not cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
    assert _mounts_under(str(cri.run_dir)) == []
    assert [m for m in _mounts_under(str(cri.root)) if "/rootfs/" in m] == []
