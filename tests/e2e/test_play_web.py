"""`cri-py play` end to end: the web example through a real cri-py daemon, then --status and --down."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cri_py.api import api_pb2
from tests.e2e.play_support import REPO, PlayEnv, play_session, wait_for, write_manifest
from tests.e2e.registry_fixtures import TestRegistry, free_port, registry  # noqa: F401

EXAMPLES = REPO / "conf" / "examples"


@pytest.fixture
def cri(cri_factory: Any, registry: TestRegistry) -> Any:  # noqa: F811
    return cri_factory(registry.daemon_overrides())


@pytest.fixture
def play_env(cri: Any, tmp_path: Path) -> Iterator[PlayEnv]:
    with play_session(f"unix://{cri.socket}", tmp_path) as env:
        yield env
    cri.remove_everything()  # a failed test may leave pods; --down is what the tests check


def test_play_web_example_serves_page_and_down_leaves_nothing(
    cri: Any,
    play_env: PlayEnv,
    registry: TestRegistry,  # noqa: F811
    tmp_path: Path,
) -> None:
    # the example as shipped: docker.io/library/busybox:latest comes from the suite's registry,
    # which the daemon has as docker.io's mirror (`make run` imports the same image instead)
    doc = yaml.safe_load((EXAMPLES / "web.yaml").read_text())
    assert doc["spec"]["containers"][0]["image"] == "docker.io/library/busybox:latest"
    port = free_port()
    doc["spec"]["containers"][0]["ports"][0]["hostPort"] = port
    manifest = write_manifest(tmp_path / "web.yaml", [doc])

    up = play_env.play(manifest)
    assert "default/web" in up.stdout

    def page() -> str | None:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
        except httpx.HTTPError:
            return None
        return response.text if response.status_code == 200 else None

    text = wait_for(page)
    assert "Hello from cri-py" in text and "pod web in namespace default" in text

    # what kubelet would have sent, as the runtime stored it
    pods = cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
    assert len(pods) == 1
    labels = dict(pods[0].labels)
    assert labels["io.kubernetes.pod.name"] == "web" and labels["app"] == "web"
    uid = labels["io.kubernetes.pod.uid"]
    containers = {
        c.metadata.name: c
        for c in cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
    }
    assert set(containers) == {"write-page", "httpd"}
    assert containers["write-page"].state == api_pb2.CONTAINER_EXITED
    assert containers["httpd"].state == api_pb2.CONTAINER_RUNNING
    status = cri.runtime.ContainerStatus(
        api_pb2.ContainerStatusRequest(container_id=containers["httpd"].id), timeout=10
    ).status
    assert status.log_path == str(play_env.pod_logs_dir / f"default_web_{uid}" / "httpd" / "0.log")
    assert (
        play_env.volume_root / "pods" / uid / "volumes" / "kubernetes.io~empty-dir" / "www" / "index.html"
    ).exists()
    # kubelet's pod cgroup with the pod's CPU shares (250m requested), the runtime's cgroups inside
    pod_cgroup = Path("/sys/fs/cgroup/cpu/kubepods/burstable") / f"pod{uid}"
    assert (pod_cgroup / "cpu.shares").read_text().strip() == "256"
    assert [p for p in pod_cgroup.iterdir() if p.is_dir()]

    table = play_env.play(manifest, "--status").stdout.splitlines()
    assert table[0].split()[:2] == ["POD", "SANDBOX"]
    rows = {name: line for line in table[1:] for name in ("httpd", "write-page") if f" {name} " in line}
    assert "Running" in rows["httpd"] and "Exited(0" in rows["write-page"]
    assert "10.214.0." in table[1]

    # playing the same manifest again changes nothing
    again = play_env.play(manifest)
    assert "already running" in again.stdout
    assert len(cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items) == 1

    play_env.play(manifest, "--down", "--grace-period", "2")
    assert cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items == []
    assert cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers == []
    assert play_env.leftovers() == []
    assert page() is None
    assert "NotFound" in play_env.play(manifest, "--status").stdout


def test_play_web_example_as_make_run_serves_it(cri_factory: Any, tmp_path: Path) -> None:
    """The README's minute: busybox imported by hack/prepare-run-images (no registry at all),
    the example unchanged, the page on 127.0.0.1:8080."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 8080))
        except OSError:
            pytest.skip("127.0.0.1:8080 is in use on this machine")
    cri = cri_factory()
    cri.stop()
    subprocess.run(
        [sys.executable, str(REPO / "hack" / "prepare-run-images"), "--config", str(cri.config_path)],
        check=True,
        capture_output=True,
        cwd=REPO,
        timeout=120,
    )
    cri.start()
    env = PlayEnv(f"unix://{cri.socket}", tmp_path / "volumes", tmp_path / "pod-logs")
    manifest = EXAMPLES / "web.yaml"
    try:
        up = env.play(manifest)
        assert "pulling" not in up.stdout  # IfNotPresent, and present

        def page() -> str | None:
            try:
                response = httpx.get("http://127.0.0.1:8080/", timeout=2)
            except httpx.HTTPError:
                return None
            return response.text if response.status_code == 200 else None

        assert "Hello from cri-py" in wait_for(page)
        env.play(manifest, "--down")
        assert env.leftovers() == []
    finally:
        env.cleanup()
