"""The same manifest through containerd's CRI: `cri-py play` is a client of any CRI runtime.

containerd (Debian's 1.6, run by hack/benchlib's ContainerdPeer with a config, socket, bridge
and subnet of its own) serves the web example; the page, --status and --down must behave as
against cri-py.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml

from cri_py.api import api_pb2, api_pb2_grpc
from cri_py.image import build
from cri_py.image.build import Entry
from cri_py.image.push import Pusher
from tests.e2e.play_support import REPO, PlayEnv, wait_for, with_image, write_manifest
from tests.e2e.registry_fixtures import TestRegistry, free_port, registry  # noqa: F401

CONTAINERD = Path("/usr/bin/containerd")
CATATONIT = Path("/usr/bin/catatonit")
SUBNET_INDEX = 7  # 10.251.7.0/24 and bridge cribplay7: the play tests' own, not the bench's

pytestmark = pytest.mark.skipif(
    not CONTAINERD.exists(), reason="containerd is not installed (Debian package `containerd`)"
)


def push_pause(registry: TestRegistry) -> str:  # noqa: F811
    """containerd needs a pause image to pull; catatonit is the one cri-py runs too."""
    layer = build.layer([Entry("catatonit", source=CATATONIT, mode=0o755)])
    with Pusher(registry.url) as push:
        push.image("play/pause", "3.10", build.image([layer], entrypoint=["/catatonit", "-P"]))
    return f"{registry.host}/play/pause:3.10"


@pytest.fixture
def containerd(registry: TestRegistry) -> Iterator[Any]:  # noqa: F811
    sys.path.insert(0, str(REPO / "hack"))
    try:
        from benchlib.network import bench_net
        from benchlib.peer import ContainerdPeer
    finally:
        sys.path.remove(str(REPO / "hack"))
    workdir = Path(tempfile.mkdtemp(prefix="cripy-play-ctrd-"))
    net = bench_net("play", SUBNET_INDEX, workdir)
    guard = ["FORWARD", "-s", net.subnet, "!", "-d", net.subnet, "-j", "DROP"]
    subprocess.run(["iptables", "-w", "-I", *guard], check=True)
    peer = ContainerdPeer(workdir, registry.host, push_pause(registry), net)
    try:
        peer.start()
        yield peer
    finally:
        peer.stop()
        net.remove_bridge()
        subprocess.run(["iptables", "-w", "-D", *guard], check=False)


def test_play_web_example_against_containerd(
    containerd: Any,
    registry: TestRegistry,  # noqa: F811
    tmp_path: Path,
) -> None:
    env = PlayEnv(containerd.endpoint, tmp_path / "volumes", tmp_path / "pod-logs")
    doc = with_image(yaml.safe_load((REPO / "conf" / "examples" / "web.yaml").read_text()), registry.busybox)
    port = free_port()
    doc["spec"]["containers"][0]["ports"][0]["hostPort"] = port
    manifest = write_manifest(tmp_path / "web.yaml", [doc])
    try:
        env.play(manifest)
        uid = sandbox_uid(containerd.endpoint)
        assert pod_cgroups(uid)  # kubelet's cgroup layout: /kubepods/burstable/pod<uid>

        def page() -> str | None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
            except httpx.HTTPError:
                return None
            return response.text if response.status_code == 200 else None

        text = wait_for(page)
        assert "Hello from cri-py" in text and "pod web in namespace default" in text
        table = env.play(manifest, "--status").stdout
        assert "Running" in table and "Exited(0, Completed)" in table and "10.251.7." in table
        env.play(manifest, "--down", "--grace-period", "2")
        assert "NotFound" in env.play(manifest, "--status").stdout
        assert env.leftovers() == []
        assert page() is None

        # the two-container example: a tmpfs emptyDir shared by writer and reader
        shared_doc = with_image(
            yaml.safe_load((REPO / "conf" / "examples" / "shared-volume.yaml").read_text()), registry.busybox
        )
        shared = write_manifest(tmp_path / "shared.yaml", [shared_doc])
        env.play(shared)
        shared_uid = sandbox_uid(containerd.endpoint)
        reader_log = env.pod_logs_dir / f"default_shared-volume_{shared_uid}" / "reader" / "0.log"
        wait_for(lambda: reader_log.exists() and "line 2 from shared-volume" in reader_log.read_text())
        env.play(shared, "--down")
        assert env.leftovers() == []
    finally:
        env.cleanup()
    assert pod_cgroups(uid) == []


def pod_cgroups(uid: str) -> list[str]:
    return [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/kubepods/*/pod{uid}")]


def sandbox_uid(endpoint: str) -> str:
    with grpc.insecure_channel(endpoint) as channel:
        runtime = api_pb2_grpc.RuntimeServiceStub(channel)
        (item,) = runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
        return str(item.labels["io.kubernetes.pod.uid"])
