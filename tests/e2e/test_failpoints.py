"""The daemon killed at precise points (failpoints, see cri_py/failpoints.py): after a restart,
kubelet's repeated request converges, and after removal nothing is left (processes, mounts,
netns pins, veths, IP allocations, cgroups, files, database rows: `traces` here and the daemon
fixture's own leftover check)."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest

from cri_py import failpoints
from cri_py.api import api_pb2
from tests.e2e import registry_fixtures
from tests.e2e.daemon import Daemon, ip_allocations
from tests.e2e.fault_support import processes, remove_all_and_check, restart_disarmed, rpc_died, wait_died
from tests.e2e.registry_fixtures import TestRegistry
from tests.e2e.test_pod_support import (
    container_config,
    create_container,
    pod_config,
    pull,
    run_pod,
    start,
    wait_state,
)

registry = registry_fixtures.registry


def armed(cri_factory: Any, registry: TestRegistry, point: str) -> Daemon:
    daemon: Daemon = cri_factory(registry.daemon_overrides(), env={failpoints.ENV: point})
    return daemon


def pod_state(daemon: Daemon, pod_id: str) -> int:
    resp = daemon.runtime.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=10)
    return int(resp.status.state)


def pods(daemon: Daemon) -> list[api_pb2.PodSandbox]:
    return list(daemon.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items)


def containers(daemon: Daemon) -> list[api_pb2.Container]:
    return list(daemon.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers)


@pytest.mark.parametrize(
    "point", [failpoints.POD_SAVED_BEFORE_NETNS, failpoints.POD_NETWORK_ADDED_BEFORE_READY]
)
def test_run_pod_sandbox_killed_midway_converges(
    cri_factory: Any, registry: TestRegistry, point: str
) -> None:
    cri = armed(cri_factory, registry, point)
    cfg = pod_config()
    rpc_died(lambda: run_pod(cri, cfg))
    wait_died(cri, point)
    restart_disarmed(cri)
    assert pods(cri) == []  # the half-made pod was unwound at start
    assert ip_allocations(cri.workdir) == []
    # kubelet asks again with the same metadata and attempt
    pod_id = run_pod(cri, cfg)
    assert pod_state(cri, pod_id) == api_pb2.SANDBOX_READY
    assert [p.id for p in pods(cri)] == [pod_id]
    assert len(ip_allocations(cri.workdir)) == 1
    remove_all_and_check(cri)


def test_create_container_killed_after_runtime_create_converges(
    cri_factory: Any, registry: TestRegistry
) -> None:
    point = failpoints.CONTAINER_CREATED_BEFORE_SAVED
    cri = armed(cri_factory, registry, point)
    pull(cri, registry.busybox)
    cfg = pod_config()
    pod_id = run_pod(cri, cfg)
    ccfg = container_config(registry.busybox, ["sleep", "3599"])
    rpc_died(lambda: create_container(cri, pod_id, cfg, ccfg))
    wait_died(cri, point)
    restart_disarmed(cri)
    assert containers(cri) == []
    cid = create_container(cri, pod_id, cfg, ccfg)
    start(cri, cid)
    wait_state(cri, cid, api_pb2.CONTAINER_RUNNING)
    assert [c.id for c in containers(cri)] == [cid]
    # one container process: the one the first create made is gone (the new one may still be
    # `runc init` for a moment after StartContainer answers)
    deadline = time.monotonic() + 10
    while not processes(cri, b"sleep\x003599\x00") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(processes(cri, b"sleep\x003599\x00")) == 1
    remove_all_and_check(cri)


def test_stop_pod_sandbox_killed_after_cni_del_converges(cri_factory: Any, registry: TestRegistry) -> None:
    point = failpoints.POD_STOP_AFTER_CNI_DEL
    cri = armed(cri_factory, registry, point)
    cfg = pod_config()
    pod_id = run_pod(cri, cfg)
    assert len(ip_allocations(cri.workdir)) == 1
    rpc_died(
        lambda: cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    )
    wait_died(cri, point)
    restart_disarmed(cri)
    assert ip_allocations(cri.workdir) == []  # the DEL had run
    cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    assert pod_state(cri, pod_id) == api_pb2.SANDBOX_NOTREADY
    cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    assert pods(cri) == []
    remove_all_and_check(cri)


def test_remove_container_killed_midway_converges(cri_factory: Any, registry: TestRegistry) -> None:
    point = failpoints.CONTAINER_REMOVE_MIDWAY
    cri = armed(cri_factory, registry, point)
    pull(cri, registry.busybox)
    cfg = pod_config()
    pod_id = run_pod(cri, cfg)
    cid = create_container(cri, pod_id, cfg, container_config(registry.busybox, ["sleep", "3600"]))
    start(cri, cid)
    cri.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=0), timeout=60)
    rpc_died(
        lambda: cri.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=60)
    )
    wait_died(cri, point)
    restart_disarmed(cri)
    cri.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=60)
    assert containers(cri) == []
    with pytest.raises(grpc.RpcError) as err:
        cri.runtime.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=cid), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    rootfs = cri.root / "rootfs"
    assert [p.name for p in rootfs.iterdir() if p.name not in ("l", "empty")] == []
    remove_all_and_check(cri)


def test_pull_killed_mid_unpack_converges(cri_factory: Any, registry: TestRegistry) -> None:
    point = failpoints.LAYER_UNPACK_MIDWAY
    cri = armed(cri_factory, registry, point)
    images_before = {i.id for i in cri.image.ListImages(api_pb2.ListImagesRequest(), timeout=10).images}
    rpc_died(lambda: pull(cri, registry.busybox))
    wait_died(cri, point)
    restart_disarmed(cri)
    status = cri.image.ImageStatus(
        api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=registry.busybox)), timeout=10
    )
    assert not status.HasField("image")
    assert pull(cri, registry.busybox) == registry.busybox_id
    after = {i.id for i in cri.image.ListImages(api_pb2.ListImagesRequest(), timeout=10).images}
    assert after - images_before == {registry.busybox_id}
    remove_all_and_check(cri)


def test_an_unknown_failpoint_is_refused_at_start(cri_factory: Any, registry: TestRegistry) -> None:
    with pytest.raises(RuntimeError, match="unknown failpoints: no-such-point"):
        cri_factory(registry.daemon_overrides(), env={failpoints.ENV: "no-such-point"})
