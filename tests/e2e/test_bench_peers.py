"""hack/peer-containerd and hack/peer-crio: each peer serves a pod through CRI and leaves nothing.

The peers are containerd 2.x and CRI-O built from their Go modules by hack/peers/build (minutes
on 2 cores); these tests run where that cache exists (`hack/peers/build` makes it, as
`hack/bench --compare` does) and are skipped elsewhere.
"""

from __future__ import annotations

import subprocess
import tempfile
import uuid
from pathlib import Path

import grpc
import pytest

from cri_py.api import api_pb2, api_pb2_grpc
from cri_py.image import build
from cri_py.image.build import Entry
from cri_py.image.push import Pusher
from tests.e2e.registry_fixtures import TestRegistry, registry  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
CATATONIT = Path("/usr/bin/catatonit")
SUBNET_INDEX = 8  # 10.251.8.0/24, bridge crib<name>8: neither the bench's nor the play tests'


def _built(peer: str, binary: str) -> bool:
    out = subprocess.run([str(REPO / "hack/peers/build"), "--bin-dir", peer], capture_output=True, text=True)
    return (Path(out.stdout.strip()) / binary).is_file()


def _pause(registry: TestRegistry) -> str:  # noqa: F811
    layer = build.layer([Entry("catatonit", source=CATATONIT, mode=0o755)])
    with Pusher(registry.url) as push:
        push.image("peers/pause", "3.10", build.image([layer], entrypoint=["/catatonit", "-P"]))
    return f"{registry.host}/peers/pause:3.10"


def _guards() -> str:
    return subprocess.run(["iptables", "-w", "-S", "FORWARD"], capture_output=True, text=True).stdout


def _pod_lifecycle(endpoint: str, image: str, logs: Path) -> str:
    channel = grpc.insecure_channel(endpoint)
    runtime = api_pb2_grpc.RuntimeServiceStub(channel)
    images = api_pb2_grpc.ImageServiceStub(channel)
    try:
        images.PullImage(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=image)), timeout=60)
        namespaces = api_pb2.NamespaceOption(network=api_pb2.POD, pid=api_pb2.CONTAINER, ipc=api_pb2.POD)
        config = api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(name="peer", uid=uuid.uuid4().hex, namespace="peers"),
            log_directory=str(logs),
            linux=api_pb2.LinuxPodSandboxConfig(
                security_context=api_pb2.LinuxSandboxSecurityContext(namespace_options=namespaces)
            ),
        )
        pod = runtime.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config), timeout=60).pod_sandbox_id
        (logs / "c").mkdir(parents=True, exist_ok=True)
        container = api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name="c"),
            image=api_pb2.ImageSpec(image=image, user_specified_image=image),
            command=["sleep", "3600"],
            log_path="c/0.log",
            linux=api_pb2.LinuxContainerConfig(
                security_context=api_pb2.LinuxContainerSecurityContext(namespace_options=namespaces)
            ),
        )
        cid = runtime.CreateContainer(
            api_pb2.CreateContainerRequest(pod_sandbox_id=pod, config=container, sandbox_config=config),
            timeout=60,
        ).container_id
        runtime.StartContainer(api_pb2.StartContainerRequest(container_id=cid), timeout=60)
        done = runtime.ExecSync(
            api_pb2.ExecSyncRequest(container_id=cid, cmd=["hostname"], timeout=10), timeout=30
        )
        assert done.exit_code == 0
        ip = runtime.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod), timeout=10).status
        assert ip.network.ip.startswith(f"10.251.{SUBNET_INDEX}."), ip.network
        runtime.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=0), timeout=60)
        runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
        runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
        version = runtime.Version(api_pb2.VersionRequest(), timeout=10)
        return f"{version.runtime_name} {version.runtime_version}"
    finally:
        channel.close()


@pytest.mark.parametrize(
    ("script", "peer", "binary", "name"),
    [
        ("peer-containerd", "containerd", "containerd", "containerd v2."),
        ("peer-crio", "crio", "crio", "cri-o 1.36."),
    ],
)
def test_peer_serves_a_pod_and_leaves_nothing(
    script: str,
    peer: str,
    binary: str,
    name: str,
    registry: TestRegistry,  # noqa: F811
) -> None:
    if not _built(peer, binary):
        pytest.skip(f"{peer} is not built (hack/peers/build {peer})")
    workdir = Path(tempfile.mkdtemp(prefix="cripy-peers-")) / "peer"
    start = [str(REPO / "hack" / script), "start", "--dir", str(workdir), "--registry", registry.host]
    start += ["--sandbox-image", _pause(registry), "--subnet-index", str(SUBNET_INDEX)]
    started = subprocess.run(start, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr[-3000:]
    endpoint = started.stdout.strip().splitlines()[-1]
    bridge = f"crib{'ctrd' if peer == 'containerd' else 'crio'}{SUBNET_INDEX}"
    try:
        assert str(workdir) in _guards()
        assert _pod_lifecycle(endpoint, registry.busybox, workdir.parent / "logs").startswith(name)
    finally:
        stopped = subprocess.run(
            [str(REPO / "hack" / script), "stop", "--dir", str(workdir)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert not workdir.exists()
    assert str(workdir) not in _guards()
    assert not Path(f"/sys/class/net/{bridge}").exists()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(workdir) not in mounts
    leftover = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True).stdout.strip()
    assert leftover == ""
    subprocess.run(["rm", "-rf", str(workdir.parent)], check=False)
