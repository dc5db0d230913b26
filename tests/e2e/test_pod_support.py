"""Shared helpers for the pod and container end-to-end tests (no tests here)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from cri_py.api import api_pb2


def pod_config(name: str = "", pid: int = api_pb2.CONTAINER, **kwargs: Any) -> api_pb2.PodSandboxConfig:
    """A pod as kubelet sends it: by default each container has its own PID namespace."""
    name = name or f"pod-{uuid.uuid4().hex[:8]}"
    cfg = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=name, namespace="e2e", uid=uuid.uuid4().hex, attempt=0),
        hostname=name,
        labels={"app": name},
        annotations={"note": "from e2e"},
        **kwargs,
    )
    cfg.linux.security_context.namespace_options.pid = pid  # type: ignore[assignment]
    return cfg


def run_pod(cri: Any, config: api_pb2.PodSandboxConfig | None = None, handler: str = "") -> str:
    config = config or pod_config()
    resp = cri.runtime.RunPodSandbox(
        api_pb2.RunPodSandboxRequest(config=config, runtime_handler=handler), timeout=60
    )
    return str(resp.pod_sandbox_id)


def pull(cri: Any, image: str) -> str:
    resp = cri.image.PullImage(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=image)), timeout=120)
    return str(resp.image_ref)


def container_config(
    image: str, command: list[str], name: str = "c", **kwargs: Any
) -> api_pb2.ContainerConfig:
    return api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name=name, attempt=0),
        image=api_pb2.ImageSpec(image=image),
        command=command,
        labels={"ctr": name},
        **kwargs,
    )


def create_container(
    cri: Any, pod_id: str, pod_cfg: api_pb2.PodSandboxConfig, config: api_pb2.ContainerConfig
) -> str:
    resp = cri.runtime.CreateContainer(
        api_pb2.CreateContainerRequest(pod_sandbox_id=pod_id, config=config, sandbox_config=pod_cfg),
        timeout=60,
    )
    return str(resp.container_id)


def start(cri: Any, cid: str) -> None:
    cri.runtime.StartContainer(api_pb2.StartContainerRequest(container_id=cid), timeout=60)


def status(cri: Any, cid: str) -> api_pb2.ContainerStatus:
    resp = cri.runtime.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=cid), timeout=10)
    return resp.status


def wait_state(cri: Any, cid: str, state: int, timeout: float = 20.0) -> api_pb2.ContainerStatus:
    deadline = time.monotonic() + timeout
    while True:
        st = status(cri, cid)
        if st.state == state:
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"container {cid} stayed in state {st.state}, wanted {state}")
        time.sleep(0.02)


def exec_sync(cri: Any, cid: str, cmd: list[str], timeout: int = 10) -> api_pb2.ExecSyncResponse:
    return cri.runtime.ExecSync(
        api_pb2.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=timeout), timeout=timeout + 30
    )
