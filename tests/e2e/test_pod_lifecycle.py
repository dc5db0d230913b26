"""Pods and containers end to end with runc: run, create, start, status, list, stop, remove."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_py.api import api_pb2
from tests.e2e import registry_fixtures
from tests.e2e.registry_fixtures import TestRegistry
from tests.e2e.test_pod_support import (
    container_config,
    create_container,
    exec_sync,
    pod_config,
    pull,
    run_pod,
    start,
    status,
    wait_state,
)

# the session fixture, under its own name so pytest finds it here
registry = registry_fixtures.registry


@pytest.fixture
def cri(cri_factory: Any, registry: TestRegistry) -> Any:
    return cri_factory(registry.daemon_overrides())


def test_pod_and_container_lifecycle(cri: Any, registry: TestRegistry, tmp_path: Path) -> None:
    image_id = pull(cri, registry.busybox)
    log_dir = tmp_path / "logs"
    pcfg = pod_config(log_directory=str(log_dir))
    pod_id = run_pod(cri, pcfg)
    pst = cri.runtime.PodSandboxStatus(
        api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=10
    ).status
    assert pst.state == api_pb2.SANDBOX_READY
    assert pst.metadata.name == pcfg.metadata.name and pst.metadata.uid == pcfg.metadata.uid
    assert dict(pst.labels) == dict(pcfg.labels) and dict(pst.annotations) == dict(pcfg.annotations)
    assert pst.network.ip.startswith("10.214.0.")
    assert pst.created_at > 0

    # kubelet resized the pod cgroup: best effort, accepted
    cri.runtime.UpdatePodSandboxResources(
        api_pb2.UpdatePodSandboxResourcesRequest(
            pod_sandbox_id=pod_id, resources=api_pb2.LinuxContainerResources(cpu_shares=256)
        ),
        timeout=10,
    )

    ccfg = container_config(
        registry.busybox,
        ["sh", "-c", "trap 'exit 3' TERM; echo started; while true; do sleep 0.1; done"],
        log_path="c/0.log",
    )
    cid = create_container(cri, pod_id, pcfg, ccfg)
    st = status(cri, cid)
    assert st.state == api_pb2.CONTAINER_CREATED
    assert st.image_id == image_id
    assert st.log_path == str(log_dir / "c/0.log")
    start(cri, cid)
    st = wait_state(cri, cid, api_pb2.CONTAINER_RUNNING)
    assert st.started_at > 0

    listed = cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
    assert [c.id for c in listed] == [cid]
    assert listed[0].pod_sandbox_id == pod_id and listed[0].image_id == image_id

    out = exec_sync(cri, cid, ["echo", "-n", "hello"])
    assert out.exit_code == 0 and out.stdout == b"hello" and out.stderr == b""
    out = exec_sync(cri, cid, ["cat", "/etc/hostname"])
    assert out.stdout.decode().strip() == pcfg.hostname

    log_text = (log_dir / "c/0.log").read_text()
    assert " stdout F started\n" in log_text

    cri.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=2), timeout=30)
    st = status(cri, cid)
    assert st.state == api_pb2.CONTAINER_EXITED
    assert st.finished_at >= st.started_at > 0
    # the shell's trap answered SIGTERM within the grace period
    assert st.reason == "Error" and st.exit_code == 3

    cri.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=30)
    with pytest.raises(grpc.RpcError) as err:
        status(cri, cid)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=30)
    pst = cri.runtime.PodSandboxStatus(
        api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=10
    ).status
    assert pst.state == api_pb2.SANDBOX_NOTREADY
    cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=30)
    assert not cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
