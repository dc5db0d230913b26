"""The daemon restarts (SIGTERM or SIGKILL) while containers run: they keep running, stay
visible, and what exited meanwhile is reported with its exit code."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

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
    daemon = cri_factory(registry.daemon_overrides())
    pull(daemon, registry.busybox)
    return daemon


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_containers_survive_a_restart(cri: Any, registry: TestRegistry, sig: int) -> None:
    cfg = pod_config(pid=api_pb2.POD)
    pod_id = run_pod(cri, cfg)
    keeps = create_container(
        cri, pod_id, cfg, container_config(registry.busybox, ["sleep", "3600"], name="keeps")
    )
    quits = create_container(
        cri,
        pod_id,
        cfg,
        container_config(
            registry.busybox,
            ["sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.05; done; exit 4"],
            name="quits",
        ),
    )
    never = create_container(cri, pod_id, cfg, container_config(registry.busybox, ["true"], name="never"))
    start(cri, keeps)
    start(cri, quits)
    wait_state(cri, quits, api_pb2.CONTAINER_RUNNING)
    cri.stop(sig)
    cri.start()
    assert status(cri, keeps).state == api_pb2.CONTAINER_RUNNING
    assert status(cri, never).state == api_pb2.CONTAINER_CREATED
    pst = cri.runtime.PodSandboxStatus(
        api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=10
    ).status
    assert pst.state == api_pb2.SANDBOX_READY
    # a restart does not lose the exit of a container that ends afterwards
    exec_sync(cri, quits, ["touch", "/tmp/go"])
    st = wait_state(cri, quits, api_pb2.CONTAINER_EXITED)
    assert st.exit_code == 4 and st.reason == "Error"
    out = exec_sync(cri, keeps, ["echo", "-n", "alive"])
    assert out.stdout == b"alive"
    began = time.monotonic()
    cri.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=keeps, timeout=0), timeout=30)
    assert time.monotonic() - began < 5
    assert status(cri, keeps).state == api_pb2.CONTAINER_EXITED
    start(cri, never)
    assert wait_state(cri, never, api_pb2.CONTAINER_EXITED).reason == "Completed"


def test_exit_while_the_daemon_is_down(cri: Any, registry: TestRegistry) -> None:
    cfg = pod_config()
    pod_id = run_pod(cri, cfg)
    cid = create_container(cri, pod_id, cfg, container_config(registry.busybox, ["sleep", "3600"]))
    start(cri, cid)
    st = wait_state(cri, cid, api_pb2.CONTAINER_RUNNING)
    info = cri.runtime.ContainerStatus(
        api_pb2.ContainerStatusRequest(container_id=cid, verbose=True), timeout=10
    ).info["info"]
    pid = json.loads(info)["pid"]
    cri.stop(signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    cri.start()
    st = wait_state(cri, cid, api_pb2.CONTAINER_EXITED)
    assert st.exit_code == 137 and st.reason == "Error" and st.finished_at > 0
