"""The node as a cluster user first meets it: Ready, on cri-py, serving the example web pod."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx
from nodelib.components import KUBELET_SYSCTLS

import cri_py
from tests.node.cluster_env import REPO, NodeEnv, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_node_is_ready_on_cri_py(node: NodeEnv) -> None:
    out = node.kubectl("get", "nodes", "-o", "wide").stdout
    assert node.node_name in out and " Ready " in out, out
    info = node.core.read_node(node.node_name).status.node_info
    assert info.container_runtime_version == f"cri-py://{cri_py.__version__}"
    assert info.kubelet_version == "v1.36.3"
    # kubelet registered with the node's own address, not a loopback one
    addresses = {a.type: a.address for a in node.core.read_node(node.node_name).status.addresses}
    assert addresses["InternalIP"] == node.cluster.slot.node_address


def test_kubelet_keeps_its_files_in_the_node_directory(node: NodeEnv) -> None:
    """kubelet's fixed paths lead into the node directory (its own mount namespace), not the host's."""
    layout = node.layout
    assert (layout.kubelet_var_lib / "device-plugins" / "kubelet.sock").is_socket()
    assert (layout.kubelet_dir / "volume-plugins").is_dir()
    assert (layout.kubelet_var_log / "containers").is_dir()
    # the kernel tunables kubelet checks read as it wants them in its namespace, unchanged here
    kubelet_pid = node.cluster.running()["kubelet"]
    assert kubelet_pid
    for key, wanted in KUBELET_SYSCTLS.items():
        seen = int(Path(f"/proc/{kubelet_pid}/root/proc/sys/{key}").read_text())
        assert seen == wanted, key
    changed = [key for key in KUBELET_SYSCTLS if (layout.sysctl_dir / key.replace("/", ".")).exists()]
    for key in changed:
        assert int(Path(f"/proc/sys/{key}").read_text()) != KUBELET_SYSCTLS[key], key


def test_web_example_served_through_port_forward(node: NodeEnv, ns: str) -> None:
    node.kubectl("apply", "-n", ns, "-f", str(REPO / "conf" / "examples" / "web.yaml"))
    node.wait_running(ns, "web")
    port = free_port()
    forward = node.kubectl_popen(
        "port-forward", "-n", ns, "pod/web", f"{port}:80", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        page = wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text, 30, "the forwarded page"
        )
        assert "Hello from cri-py" in page
        assert f"pod web in namespace {ns}" in page
        # a second connection through the same forward
        assert "Hello from cri-py" in httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
    finally:
        forward.terminate()
        forward.wait(10)
    # the hostPort of the example is mapped on the node's address
    assert "Hello from cri-py" in wait_for(
        lambda: httpx.get(f"http://{node.cluster.slot.node_address}:8080/", timeout=2).text,
        30,
        "hostPort 8080",
    )
    started = time.monotonic()
    node.kubectl("delete", "-n", ns, "pod/web", "--wait=true", timeout=60)
    # terminationGracePeriodSeconds is 5 and httpd ends on SIGTERM at once
    assert time.monotonic() - started < 25
