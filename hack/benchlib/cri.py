"""A thin synchronous CRI client with the pod and container shapes the bench uses."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from cri_py.api import api_pb2, api_pb2_grpc

BENCH_LABEL = "cri-bench"
RPC_TIMEOUT = 120.0
# a pod's own network and IPC namespaces, a PID namespace per container (kubelet's default)
NAMESPACES = api_pb2.NamespaceOption(network=api_pb2.POD, pid=api_pb2.CONTAINER, ipc=api_pb2.POD)


@dataclass
class Pod:
    id: str
    config: api_pb2.PodSandboxConfig
    containers: list[str] = field(default_factory=list)


class CriClient:
    def __init__(self, endpoint: str, images_busybox: str, log_root: Path, cgroup_parent: str) -> None:
        self.endpoint = endpoint
        self.channel = grpc.insecure_channel(
            endpoint, options=[("grpc.max_receive_message_length", 64 << 20)]
        )
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.image = api_pb2_grpc.ImageServiceStub(self.channel)
        self.busybox = images_busybox
        self.log_root = log_root
        self.cgroup_parent = cgroup_parent

    def close(self) -> None:
        self.channel.close()

    def version(self) -> str:
        resp = self.runtime.Version(api_pb2.VersionRequest(version="v1"), timeout=10)
        return f"{resp.runtime_name} {resp.runtime_version}"

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.version()
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    # images
    def pull(self, ref: str) -> str:
        resp = self.image.PullImage(
            api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref)), timeout=RPC_TIMEOUT
        )
        return str(resp.image_ref)

    def remove_image(self, ref: str) -> None:
        self.image.RemoveImage(
            api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=ref)), timeout=RPC_TIMEOUT
        )

    def has_image(self, ref: str) -> bool:
        resp = self.image.ImageStatus(
            api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=ref)), timeout=RPC_TIMEOUT
        )
        return bool(resp.HasField("image"))

    # pods and containers
    def pod_config(self, name: str) -> api_pb2.PodSandboxConfig:
        uid = uuid.uuid4().hex
        log_dir = self.log_root / f"{name}_{uid}"
        return api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(name=name, uid=uid, namespace="cri-bench", attempt=0),
            hostname=name[:63],
            log_directory=str(log_dir),
            labels={BENCH_LABEL: "1"},
            linux=api_pb2.LinuxPodSandboxConfig(
                cgroup_parent=self.cgroup_parent,
                security_context=api_pb2.LinuxSandboxSecurityContext(namespace_options=NAMESPACES),
            ),
        )

    def run_pod(self, name: str) -> Pod:
        config = self.pod_config(name)
        resp = self.runtime.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config), timeout=RPC_TIMEOUT)
        return Pod(resp.pod_sandbox_id, config)

    def container_config(self, name: str) -> api_pb2.ContainerConfig:
        return api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name=name, attempt=0),
            # kubelet names the image as the pod spec wrote it too (CRI-O checks signatures by it)
            image=api_pb2.ImageSpec(image=self.busybox, user_specified_image=self.busybox),
            command=["sleep", "3600"],
            log_path=f"{name}/0.log",
            labels={BENCH_LABEL: "1"},
            # kubelet repeats the pod's namespace choices for every container
            linux=api_pb2.LinuxContainerConfig(
                security_context=api_pb2.LinuxContainerSecurityContext(namespace_options=NAMESPACES)
            ),
        )

    def create_container(self, pod: Pod, name: str) -> str:
        # kubelet makes the container's log directory before it asks (CRI-O's conmon needs it)
        Path(pod.config.log_directory, name).mkdir(parents=True, exist_ok=True)
        resp = self.runtime.CreateContainer(
            api_pb2.CreateContainerRequest(
                pod_sandbox_id=pod.id, config=self.container_config(name), sandbox_config=pod.config
            ),
            timeout=RPC_TIMEOUT,
        )
        pod.containers.append(resp.container_id)
        return str(resp.container_id)

    def start_container(self, container_id: str) -> None:
        self.runtime.StartContainer(
            api_pb2.StartContainerRequest(container_id=container_id), timeout=RPC_TIMEOUT
        )

    def stop_container(self, container_id: str) -> None:
        # sleep as PID 1 ignores SIGTERM, so timeout 0 (straight to SIGKILL) measures the runtime, not a grace period
        self.runtime.StopContainer(
            api_pb2.StopContainerRequest(container_id=container_id, timeout=0), timeout=RPC_TIMEOUT
        )

    def remove_container(self, container_id: str) -> None:
        self.runtime.RemoveContainer(
            api_pb2.RemoveContainerRequest(container_id=container_id), timeout=RPC_TIMEOUT
        )

    def stop_pod(self, pod_id: str) -> None:
        self.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT)

    def remove_pod(self, pod_id: str) -> None:
        self.runtime.RemovePodSandbox(
            api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT
        )

    def exec_sync(self, container_id: str, cmd: list[str]) -> int:
        resp = self.runtime.ExecSync(
            api_pb2.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=10), timeout=RPC_TIMEOUT
        )
        return int(resp.exit_code)

    def list_containers(self) -> int:
        return len(
            self.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=RPC_TIMEOUT).containers
        )

    def list_pods(self) -> int:
        return len(self.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=RPC_TIMEOUT).items)

    # what kubelet polls
    def pod_status(self, pod_id: str) -> None:
        self.runtime.PodSandboxStatus(
            api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT
        )

    def container_status(self, container_id: str) -> None:
        self.runtime.ContainerStatus(
            api_pb2.ContainerStatusRequest(container_id=container_id), timeout=RPC_TIMEOUT
        )

    def list_pod_stats(self) -> int:
        return len(
            self.runtime.ListPodSandboxStats(api_pb2.ListPodSandboxStatsRequest(), timeout=RPC_TIMEOUT).stats
        )

    def list_container_stats(self) -> int:
        return len(
            self.runtime.ListContainerStats(api_pb2.ListContainerStatsRequest(), timeout=RPC_TIMEOUT).stats
        )

    def image_fs_info(self) -> None:
        self.image.ImageFsInfo(api_pb2.ImageFsInfoRequest(), timeout=RPC_TIMEOUT)

    def pod_with_container(self, name: str) -> Pod:
        pod = self.run_pod(name)
        cid = self.create_container(pod, "c")
        self.start_container(cid)
        return pod

    def teardown_pod(self, pod: Pod | str) -> None:
        """As kubelet does: kill the containers first, then stop and remove the pod.

        Stopping a pod with its containers still running makes CRI-O wait for them up to the
        RPC's deadline (busybox sleep as PID 1 ignores SIGTERM).
        """
        pod_id = pod.id if isinstance(pod, Pod) else pod
        if isinstance(pod, Pod):
            containers = list(pod.containers)
        else:
            listing = self.runtime.ListContainers(
                api_pb2.ListContainersRequest(filter=api_pb2.ContainerFilter(pod_sandbox_id=pod_id)),
                timeout=RPC_TIMEOUT,
            )
            containers = [c.id for c in listing.containers if c.state == api_pb2.CONTAINER_RUNNING]
        for cid in containers:
            try:
                self.stop_container(cid)
            except grpc.RpcError:
                pass  # gone already, or stopped: the pod's stop handles the rest
        self.stop_pod(pod_id)
        self.remove_pod(pod_id)

    def lifecycle(self, name: str) -> None:
        pod = self.run_pod(name)
        cid = self.create_container(pod, "c")
        self.start_container(cid)
        self.stop_container(cid)
        self.remove_container(cid)
        self.stop_pod(pod.id)
        self.remove_pod(pod.id)

    def remove_bench_pods(self) -> int:
        """Stop and remove every pod the bench made (also after a failure); returns how many."""
        items = self.runtime.ListPodSandbox(
            api_pb2.ListPodSandboxRequest(filter=api_pb2.PodSandboxFilter(label_selector={BENCH_LABEL: "1"})),
            timeout=RPC_TIMEOUT,
        ).items
        for item in items:
            try:
                self.teardown_pod(item.id)
            except grpc.RpcError:
                pass
        return len(items)
