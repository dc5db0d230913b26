"""What the node tests drive the cluster with: the API (kubernetes client), kubectl, cri-py's CRI.

One `NodeEnv` per session; each test gets a namespace of its own (`ns`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from cri_py.api import api_pb2, api_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "hack"))

from nodelib.cluster import Cluster  # noqa: E402

T = TypeVar("T")
BUSYBOX = "docker.io/library/busybox:latest"


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
    """Poll until check() returns something truthy; returns it."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except (ApiException, OSError, KeyError, IndexError, TypeError, httpx.HTTPError) as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error})"
            )
        time.sleep(interval)


@dataclass
class NodeEnv:
    cluster: Cluster
    core: client.CoreV1Api
    apps: client.AppsV1Api
    batch: client.BatchV1Api
    api_client: client.ApiClient

    @property
    def layout(self) -> Any:
        return self.cluster.layout

    @property
    def node_name(self) -> str:
        return self.cluster.slot.node_name

    @property
    def kubectl_path(self) -> Path:
        return self.cluster.bin_dir / "kubectl"

    def kubectl_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.cluster.kubeconfig),
            # kubectl's discovery cache stays in the node directory, not in ~/.kube
            "KUBECACHEDIR": str(self.layout.dir / "kubectl-cache"),
        }

    def kubectl(
        self, *args: str, input: str | bytes | None = None, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        text_input = input.decode() if isinstance(input, bytes) else input
        proc = subprocess.run(
            [str(self.kubectl_path), *args],
            input=text_input,
            capture_output=True,
            text=True,
            env=self.kubectl_env(),
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}")
        return proc

    def kubectl_popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen([str(self.kubectl_path), *args], env=self.kubectl_env(), **kwargs)

    # ---- pods ----------------------------------------------------------------------------------

    def create_pod(self, ns: str, manifest: dict[str, Any]) -> str:
        manifest.setdefault("apiVersion", "v1")
        manifest.setdefault("kind", "Pod")
        spec = manifest["spec"]
        spec.setdefault("terminationGracePeriodSeconds", 2)
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            c.setdefault("image", BUSYBOX)
            c.setdefault("imagePullPolicy", "IfNotPresent")
        self.core.create_namespaced_pod(ns, manifest)
        return str(manifest["metadata"]["name"])

    def pod(self, ns: str, name: str) -> Any:
        return self.core.read_namespaced_pod(name, ns)

    def wait_pod(
        self, ns: str, name: str, check: Callable[[Any], Any], timeout: float = 90, what: str = ""
    ) -> Any:
        def probe() -> Any:
            pod = self.pod(ns, name)
            return pod if check(pod) else None

        try:
            return wait_for(probe, timeout, what or f"pod {ns}/{name}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.describe(ns, name)}") from None

    def wait_running(self, ns: str, name: str, timeout: float = 90) -> Any:
        return self.wait_pod(ns, name, lambda p: ready(p), timeout, f"pod {ns}/{name} to be Ready")

    def wait_phase(self, ns: str, name: str, phase: str, timeout: float = 90) -> Any:
        return self.wait_pod(ns, name, lambda p: p.status.phase == phase, timeout, f"pod {ns}/{name} {phase}")

    def describe(self, ns: str, name: str) -> str:
        return self.kubectl("describe", "pod", "-n", ns, name, check=False).stdout[-4000:]

    def logs(self, ns: str, name: str, container: str, previous: bool = False) -> str:
        text: str = self.core.read_namespaced_pod_log(name, ns, container=container, previous=previous)
        return text

    # ---- cri-py, as kubelet sees it ------------------------------------------------------------

    @contextlib.contextmanager
    def cri(self) -> Iterator[Any]:
        channel = grpc.insecure_channel(f"unix://{self.layout.cri_socket}")
        try:
            yield api_pb2_grpc.RuntimeServiceStub(channel)
        finally:
            channel.close()

    def cri_pods(self, namespace: str) -> list[Any]:
        with self.cri() as rt:
            items = rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
        return [p for p in items if p.metadata.namespace == namespace]

    def cri_containers(self, namespace: str) -> list[Any]:
        with self.cri() as rt:
            items = rt.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
        return [c for c in items if c.labels.get("io.kubernetes.pod.namespace") == namespace]


def ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def container_status(pod: Any, name: str) -> Any:
    statuses = [*(pod.status.container_statuses or []), *(pod.status.init_container_statuses or [])]
    for status in statuses:
        if status.name == name:
            return status
    raise KeyError(name)


def container_id(pod: Any, name: str) -> str:
    cid: str = container_status(pod, name).container_id
    assert cid.startswith("cri-py://"), cid
    return cid.removeprefix("cri-py://")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def make_env(cluster: Cluster) -> NodeEnv:
    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    return NodeEnv(
        cluster=cluster,
        core=client.CoreV1Api(api_client),
        apps=client.AppsV1Api(api_client),
        batch=client.BatchV1Api(api_client),
        api_client=api_client,
    )


# ---- leftovers: what a node could leave on the host ------------------------------------------------


def host_traces(layout: Any, slot: Any) -> list[str]:
    """What of this node (its directory, its slot's names and addresses) is still on the host."""
    d = str(layout.dir)
    found: list[str] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            point = line.split()[4]
            if point == d or point.startswith(d + "/"):
                found.append(f"mount {point}")
    for name in (slot.host_veth, slot.bridge):
        if os.path.exists(f"/sys/class/net/{name}"):
            found.append(f"link {name}")
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    subnets = {slot.pod_subnet, slot.service_range, slot.node_address, slot.host_address}
    found += [f"iptables {r}" for r in rules.splitlines() if slot.name in r or any(s in r for s in subnets)]
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        if (hierarchy / slot.cgroup_root.lstrip("/")).exists():
            found.append(f"cgroup {hierarchy / slot.cgroup_root.lstrip('/')}")
    # kubelet's links to the container logs (its mount namespace puts them in the node directory;
    # test_kubelet_keeps_its_files_in_the_node_directory checks its other fixed paths there)
    logs = Path("/var/log/containers")
    if logs.is_dir():
        found += [f"file {p}" for p in logs.iterdir() if d in os.path.realpath(p)]
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            with contextlib.suppress(OSError):
                if d.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(f"process {pid}")
    return found
