"""CRI-O's container inspect API (`inspect_socket`), which kubelet's cAdvisor reads to label
/metrics/cadvisor: what it answers, the crio-<id> cgroups it comes with, the writable layer
where cAdvisor looks for it; without the key, none of it."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from cri_py.api import api_pb2
from tests.e2e import registry_fixtures
from tests.e2e.registry_fixtures import TestRegistry
from tests.e2e.test_pod_support import (
    container_config,
    create_container,
    pod_config,
    pull,
    run_pod,
    start,
)
from tests.e2e.test_pod_support import status as status_of

registry = registry_fixtures.registry

KUBELET_LABELS = {
    "io.kubernetes.container.name": "app",
    "io.kubernetes.pod.name": "web",
    "io.kubernetes.pod.namespace": "shop",
    "io.kubernetes.pod.uid": "0f1e2d3c",
}


class UnixHTTP(http.client.HTTPConnection):
    """HTTP over a unix socket, as cAdvisor's CRI-O client talks to it."""

    def __init__(self, path: Path) -> None:
        super().__init__("crio", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(str(self.path))


def get(path: Path, url: str, method: str = "GET") -> tuple[int, Any]:
    conn = UnixHTTP(path)
    try:
        conn.request(method, url)
        reply = conn.getresponse()
        body = reply.read()
        document = json.loads(body) if reply.status == 200 and body else body
        return reply.status, document
    finally:
        conn.close()


def container_pid(cri: Any, cid: str) -> int:
    resp = cri.runtime.ContainerStatus(
        api_pb2.ContainerStatusRequest(container_id=cid, verbose=True), timeout=10
    )
    return int(json.loads(resp.info["info"])["pid"])


def cgroup_names(pid: int) -> set[str]:
    """The last path component of the process's cgroup in each hierarchy."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    return {line.split(":", 2)[2].rstrip("/").rsplit("/", 1)[-1] for line in lines}


def running_container(cri: Any, image: str, log_dir: Path) -> tuple[str, str, api_pb2.PodSandboxConfig]:
    pcfg = pod_config(log_directory=str(log_dir))  # as kubelet: /var/log/pods/<ns>_<name>_<uid>
    pod_id = run_pod(cri, pcfg)
    pull(cri, image)
    cfg = container_config(image, ["sh", "-c", "echo hello > /written; sleep 300"], log_path="app/0.log")
    cfg.labels.update(KUBELET_LABELS)
    cfg.annotations["io.kubernetes.container.restartCount"] = "0"
    cid = create_container(cri, pod_id, pcfg, cfg)
    start(cri, cid)
    return pod_id, cid, pcfg


def test_inspect_api_describes_containers_as_cadvisor_reads_them(
    cri_factory: Any, registry: TestRegistry, tmp_path: Path
) -> None:
    sock = tmp_path / "crio.sock"
    cri = cri_factory({**registry.daemon_overrides(), "inspect_socket": str(sock)})
    pod_id, cid, _ = running_container(cri, registry.busybox, tmp_path / "logs")

    status, info = get(sock, "/info")
    assert status == 200
    assert info["storage_driver"] == "overlay"
    assert info["storage_root"] == str(cri.root / "rootfs")

    status, doc = get(sock, f"/containers/{cid}")
    assert status == 200
    pid = container_pid(cri, cid)
    assert doc["pid"] == pid > 0
    assert doc["labels"]["ctr"] == "c"
    for key, value in KUBELET_LABELS.items():
        assert doc["labels"][key] == value
    assert doc["annotations"]["io.kubernetes.container.restartCount"] == "0"
    assert doc["name"] == "k8s_app_web_shop_0f1e2d3c_0"
    assert doc["image"] == status_of(cri, cid).image.image
    pod = cri.runtime.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=10)
    assert doc["ip_address"] == pod.status.network.ip != ""
    assert doc["ip_addresses"] == [pod.status.network.ip]
    # cAdvisor counts the log file's size as the container's (CRI-O's log_path is the file)
    assert doc["log_path"] == str(tmp_path / "logs" / "app" / "0.log") == status_of(cri, cid).log_path
    # cAdvisor measures the writable layer at <root without /merged>/diff
    assert doc["root"].endswith("/merged")
    diff = Path(doc["root"].removesuffix("/merged")) / "diff"
    assert (diff / "written").read_text() == "hello\n"
    # its CRI-O handler takes only cgroups named crio-<64 hex id>, kubelet's stats merge the
    # bare id or <...>-<id>.scope
    assert f"crio-{cid}.scope" in cgroup_names(pid)

    assert get(sock, f"/containers/{cid[:12]}")[0] == 404  # full ids only, as cAdvisor asks
    assert get(sock, "/containers/" + "0" * 64)[0] == 404
    # no infra process: the pod is described as POD with its running container's pid, whose
    # network counters are the pod's
    status, pod_doc = get(sock, f"/containers/{pod_id}")
    assert status == 200
    assert pod_doc["labels"]["io.kubernetes.container.name"] == "POD"
    assert pod_doc["pid"] == pid
    assert get(sock, "/nothing")[0] == 404
    assert get(sock, f"/containers/{cid}", method="POST")[0] == 405

    cri.stop()
    assert not sock.exists()
    cri.start()  # the fixture removes the pod through the CRI


def test_pod_with_an_infra_process_is_described_as_pod(
    cri_factory: Any, registry: TestRegistry, tmp_path: Path
) -> None:
    sock = tmp_path / "crio.sock"
    cri = cri_factory({**registry.daemon_overrides(), "inspect_socket": str(sock)})
    pcfg = pod_config(pid=api_pb2.POD)  # a shared PID namespace: its infra process holds it
    pod_id = run_pod(cri, pcfg)
    status, doc = get(sock, f"/containers/{pod_id}")
    assert status == 200
    assert doc["labels"]["io.kubernetes.container.name"] == "POD"
    assert doc["labels"]["io.kubernetes.pod.name"] == pcfg.metadata.name
    assert doc["labels"]["io.kubernetes.pod.namespace"] == "e2e"
    assert doc["pid"] > 0
    assert f"crio-{pod_id}.scope" in cgroup_names(doc["pid"])


def test_live_socket_is_not_taken(cri_factory: Any, tmp_path: Path) -> None:
    sock = tmp_path / "crio.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock))
    listener.listen()
    try:
        with pytest.raises(RuntimeError, match="another daemon is serving on"):
            cri_factory({"inspect_socket": str(sock)})
    finally:
        listener.close()


def test_without_inspect_socket_cgroups_keep_cri_py_names(
    cri_factory: Any, registry: TestRegistry, tmp_path: Path
) -> None:
    cri = cri_factory(registry.daemon_overrides())
    _, cid, _ = running_container(cri, registry.busybox, tmp_path / "logs")
    names = cgroup_names(container_pid(cri, cid))
    assert f"cri-py-{cid}" in names
    assert f"crio-{cid}" not in names


HIERARCHIES = ("cpu", "memory", "pids")


def v1_roots() -> list[Path]:
    """Three cgroup v1 hierarchies (mounted: a path below /sys/fs/cgroup's tmpfs is none)."""
    roots = [Path("/sys/fs/cgroup") / h for h in HIERARCHIES]
    if not all(os.path.ismount(root) for root in roots):
        pytest.skip("needs the cgroup v1 hierarchies " + ", ".join(HIERARCHIES))
    return roots


def test_a_pod_without_an_infra_process_gets_an_empty_cgroup_for_cadvisor(
    cri_factory: Any, registry: TestRegistry, tmp_path: Path
) -> None:
    """kubelet takes a pod's network counters from cAdvisor's entry for the cgroup named for
    the sandbox id; without an infra process cri-py makes that cgroup empty, under the pod's
    cgroup (kubelet's, made before RunPodSandbox), and removes it with the pod."""
    sock = tmp_path / "crio.sock"
    cri = cri_factory({**registry.daemon_overrides(), "inspect_socket": str(sock)})
    pod_parent = f"{cri.config['cgroup_parent'].strip('/')}/kubepods-pod1"
    roots = v1_roots()
    for root in roots:  # as kubelet makes the pod's cgroup
        (root / pod_parent).mkdir(parents=True)
    try:
        pcfg = pod_config(log_directory=str(tmp_path / "logs"))
        pcfg.linux.cgroup_parent = "/" + pod_parent
        pod_id = run_pod(cri, pcfg)
        stats_cgroup = f"{pod_parent}/crio-{pod_id}.scope"
        for root in roots:
            assert (root / stats_cgroup).is_dir()
            assert not (root / stats_cgroup / "cgroup.procs").read_text().strip()
        assert not (Path("/sys/fs/cgroup/freezer") / pod_parent).exists()  # no parent made
        status, doc = get(sock, f"/containers/{pod_id}")
        assert status == 200
        assert doc["labels"]["io.kubernetes.container.name"] == "POD"
        assert doc["pid"] == 0  # no container runs yet: cAdvisor asks again

        pull(cri, registry.busybox)
        cfg = container_config(registry.busybox, ["sleep", "300"], log_path="c/0.log")
        cid = create_container(cri, pod_id, pcfg, cfg)
        start(cri, cid)
        pid = container_pid(cri, cid)
        assert get(sock, f"/containers/{pod_id}")[1]["pid"] == pid
        assert f"crio-{cid}.scope" in cgroup_names(pid)

        cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=30)
        cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=30)
        for root in roots:
            assert not (root / stats_cgroup).exists()
            assert (root / pod_parent).is_dir()  # kubelet's, not ours
    finally:  # the pod's cgroup, the test's as kubelet's (runc made it in the other hierarchies)
        for root in Path("/sys/fs/cgroup").iterdir():
            with contextlib.suppress(OSError):
                (root / pod_parent).rmdir()


def test_containers_named_before_a_restart_are_still_found_and_removed(
    cri_factory: Any, registry: TestRegistry, tmp_path: Path
) -> None:
    """A daemon restarted with another naming (an upgrade, `inspect_socket` turned on) keeps
    reading and removing its running containers' cgroups where they were made."""
    cri = cri_factory(registry.daemon_overrides())
    pod_id, old_cid, pcfg = running_container(cri, registry.busybox, tmp_path / "logs")
    old_cgroup = f"cri-py-{old_cid}"
    assert old_cgroup in cgroup_names(container_pid(cri, old_cid))

    cri.config["inspect_socket"] = str(tmp_path / "crio.sock")
    cri.config_path.write_text(yaml.safe_dump(cri.config))
    cri.restart()
    cfg = container_config(registry.busybox, ["sleep", "300"], name="new", log_path="new/0.log")
    new_cid = create_container(cri, pod_id, pcfg, cfg)
    start(cri, new_cid)
    assert f"crio-{new_cid}.scope" in cgroup_names(container_pid(cri, new_cid))
    stats = cri.runtime.ContainerStats(api_pb2.ContainerStatsRequest(container_id=old_cid), timeout=10).stats
    assert stats.memory.working_set_bytes.value > 0  # read from the old cgroup

    cri.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=old_cid, timeout=0), timeout=30)
    cri.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=old_cid), timeout=30)
    parent = cri.config["cgroup_parent"].strip("/")
    for root in v1_roots():
        assert not (root / parent / old_cgroup).exists()
