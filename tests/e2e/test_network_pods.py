"""Pod networking through the CRI: pod IPs, pod-to-pod traffic, hostPorts, DNS, teardown, readiness.

Runs on the suite's own bridge and subnet (tests/e2e/daemon.py), guarded by conftest's
FORWARD rule, with busybox containers from the local test registry.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_py.api import api_pb2
from cri_py.network.netns import pinned_netns_path
from tests.e2e.daemon import Daemon
from tests.e2e.registry_fixtures import TestRegistry, registry  # noqa: F401
from tests.e2e.test_pod_support import (
    container_config,
    create_container,
    exec_sync,
    pod_config,
    pull,
    run_pod,
    start,
    wait_state,
)

FAKE_PLUGIN = Path(__file__).parents[1] / "unit" / "network" / "fake_cni_plugin"
# A network of this module's own: daemons of other test runs on the suite's shared bridge
# and subnet (each with its own IPAM dir) could hand out the same addresses meanwhile.
BRIDGE = "crinet2"
SUBNET = "10.213.79.0/24"
SUBNET_PREFIX = "10.213.79."
NETWORK = "cri-py-net-e2e"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def guarded_bridge() -> Iterator[None]:
    guard = ["FORWARD", "-s", SUBNET, "!", "-d", SUBNET, "-j", "DROP"]
    subprocess.run(["iptables", "-w", "-I", *guard], check=True)
    try:
        yield
    finally:
        subprocess.run(["iptables", "-w", "-D", *guard], check=False)
        subprocess.run(["ip", "link", "del", BRIDGE], check=False, capture_output=True)


def conflist(ipam: Path, extra_plugins: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(ipam),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            *(extra_plugins or []),
            {"type": "loopback"},
        ],
    }


def network_overrides(tmp_path: Path, extra_plugins: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-net-e2e.conflist").write_text(json.dumps(conflist(tmp_path / "ipam", extra_plugins)))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(FAKE_PLUGIN, bin_dir / "refuse")
    return {"cni": {"conf_dir": str(conf_dir), "bin_dirs": ["/usr/lib/cni", str(bin_dir)]}}


@pytest.fixture
def cri(cri_factory: Any, registry: TestRegistry, tmp_path: Path, guarded_bridge: None) -> Daemon:  # noqa: F811
    daemon: Daemon = cri_factory({**registry.daemon_overrides(), **network_overrides(tmp_path)})
    daemon.extra["ipam"] = tmp_path / "ipam"
    return daemon


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pod_status(cri: Daemon, pod_id: str) -> api_pb2.PodSandboxStatus:
    return cri.runtime.PodSandboxStatus(
        api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=10
    ).status


def stop_and_remove(cri: Daemon, pod_id: str) -> None:
    cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)


def ipam_allocations(cri: Daemon) -> list[str]:
    net_dir = cri.extra["ipam"] / NETWORK
    if not net_dir.is_dir():
        return []
    return sorted(p.name for p in net_dir.iterdir() if p.name[0].isdigit())


def bridge_ports(bridge: str = BRIDGE) -> list[str]:
    out = subprocess.run(
        ["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True, check=False
    ).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line.strip()]


def host_veth(cri: Daemon, pod_id: str) -> str:
    """The host end of the pod's eth0 (other daemons may have pods on the same bridge)."""
    netns = pinned_netns_path(Path(cri.config["run_dir"]), pod_id)
    inside = subprocess.run(
        ["nsenter", f"--net={netns}", "ip", "-o", "link", "show", "eth0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    peer_index = inside.split(":")[1].strip().split("@if")[1]
    host = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    for line in host.splitlines():
        index, name = line.split(":")[:2]
        if index == peer_index:
            return name.strip().split("@")[0]
    raise AssertionError(f"no host link with index {peer_index}")


def iptables_save() -> str:
    return subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout


def assert_nothing_left(cri: Daemon, pod_ids: list[str], ports: set[str], host_ports: list[int]) -> None:
    """Nothing of these pods: other daemons may share the suite's bridge and subnet meanwhile."""
    run_dir = Path(cri.config["run_dir"])
    for pod_id in pod_ids:
        assert not pinned_netns_path(run_dir, pod_id).exists()
    assert ipam_allocations(cri) == []
    assert not ports & set(bridge_ports())
    rules = iptables_save()
    for needle in [*pod_ids, *(f"--dport {p} " for p in host_ports)]:
        assert needle not in rules, needle
    cache = Path(cri.config["cni"]["cache_dir"]) / "results"
    assert not cache.exists() or not list(cache.iterdir())


def network_ready(cri: Daemon) -> api_pb2.RuntimeCondition:
    conditions = cri.runtime.Status(api_pb2.StatusRequest(), timeout=10).status.conditions
    return next(c for c in conditions if c.type == "NetworkReady")


def busybox_in(cri: Daemon, pod_id: str, pcfg: api_pb2.PodSandboxConfig, image: str, cmd: list[str]) -> str:
    cid = create_container(cri, pod_id, pcfg, container_config(image, cmd))
    start(cri, cid)
    wait_state(cri, cid, api_pb2.CONTAINER_RUNNING)
    return cid


def test_pods_talk_host_port_answers_dns_lands_and_nothing_is_left(
    cri: Daemon,
    registry: TestRegistry,  # noqa: F811
) -> None:
    pull(cri, registry.busybox)
    host_port = free_port()
    dns = api_pb2.DNSConfig(servers=["10.214.0.250"], searches=["ns1.svc.test"], options=["ndots:3"])
    web_cfg = pod_config(
        dns_config=dns,
        port_mappings=[api_pb2.PortMapping(protocol=api_pb2.TCP, container_port=80, host_port=host_port)],
    )
    client_cfg = pod_config()
    web = run_pod(cri, web_cfg)
    client = run_pod(cri, client_cfg)
    our_ports = {host_veth(cri, web), host_veth(cri, client)}
    assert our_ports <= set(bridge_ports())
    web_ip = pod_status(cri, web).network.ip
    client_ip = pod_status(cri, client).network.ip
    assert web_ip.startswith(SUBNET_PREFIX) and client_ip.startswith(SUBNET_PREFIX)
    assert web_ip != client_ip
    assert len(ipam_allocations(cri)) == 2

    busybox_in(cri, web, web_cfg, registry.busybox, ["httpd", "-f", "-p", "80", "-h", "/etc"])
    probe = busybox_in(cri, client, client_cfg, registry.busybox, ["sleep", "3600"])

    # pod to pod, by pod IP; httpd may need a moment to listen (busybox nc: its wget dies on
    # a refused connection here)
    request = f"printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc {web_ip} 80"
    deadline = time.monotonic() + 10
    while True:
        out = exec_sync(cri, probe, ["sh", "-c", request])
        if out.stdout.startswith(b"HTTP/1.") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert out.stdout.startswith(b"HTTP/1.1 200"), (out.exit_code, out.stdout, out.stderr)
    assert out.stdout.decode().rstrip().endswith(web_cfg.hostname)

    # hostPort from the host on localhost
    with urllib.request.urlopen(f"http://127.0.0.1:{host_port}/hostname", timeout=5) as resp:
        assert resp.read().decode().strip() == web_cfg.hostname

    # dns_config in the web pod's resolv.conf
    web_ctr = cri.runtime.ListContainers(
        api_pb2.ListContainersRequest(filter=api_pb2.ContainerFilter(pod_sandbox_id=web)), timeout=10
    ).containers[0]
    resolv = exec_sync(cri, web_ctr.id, ["cat", "/etc/resolv.conf"]).stdout.decode()
    assert "nameserver 10.214.0.250" in resolv
    assert "ns1.svc.test" in resolv and "ndots:3" in resolv

    for pod_id in (web, client):
        stop_and_remove(cri, pod_id)
    assert_nothing_left(cri, [web, client], our_ports, [host_port])


def test_restart_between_run_and_stop(cri: Daemon) -> None:
    host_port = free_port()
    cfg = pod_config(port_mappings=[api_pb2.PortMapping(container_port=80, host_port=host_port)])
    pod_id = run_pod(cri, cfg)
    our_ports = {host_veth(cri, pod_id)}
    ip = pod_status(cri, pod_id).network.ip
    assert ip.startswith(SUBNET_PREFIX)
    assert pod_id in iptables_save() and f"--dport {host_port} " in iptables_save()

    cri.restart()
    assert pod_status(cri, pod_id).network.ip == ip
    stop_and_remove(cri, pod_id)
    assert_nothing_left(cri, [pod_id], our_ports, [host_port])


def test_status_reports_only_addresses_the_netns_has(cri: Daemon) -> None:
    pod_id = run_pod(cri, pod_config())
    ip = pod_status(cri, pod_id).network.ip
    assert ip.startswith(SUBNET_PREFIX)
    netns = pinned_netns_path(Path(cri.config["run_dir"]), pod_id)
    # someone took the address away inside the pod: the CNI result alone would still claim it
    in_pod = ["nsenter", f"--net={netns}", "ip", "addr"]
    subprocess.run([*in_pod, "del", f"{ip}/24", "dev", "eth0"], check=True)
    assert pod_status(cri, pod_id).network.ip == ""
    # given back, it is reported again (and DEL finds it to remove the pod's masquerade rules)
    subprocess.run([*in_pod, "add", f"{ip}/24", "dev", "eth0"], check=True)
    assert pod_status(cri, pod_id).network.ip == ip
    stop_and_remove(cri, pod_id)
    assert pod_id not in iptables_save()


def test_failing_plugin_fails_run_pod_sandbox_cleanly(
    cri_factory: Any, tmp_path: Path, guarded_bridge: None
) -> None:
    port = free_port()
    refuse = {"type": "refuse", "fail": {"ADD": {"code": 142, "msg": "address quota exceeded"}}}
    cri: Daemon = cri_factory(network_overrides(tmp_path, [refuse]))
    cri.extra["ipam"] = tmp_path / "ipam"
    cfg = pod_config(port_mappings=[api_pb2.PortMapping(container_port=80, host_port=port)])
    with pytest.raises(grpc.RpcError) as info:
        run_pod(cri, cfg)
    assert "address quota exceeded" in (info.value.details() or "")
    assert "142" in (info.value.details() or "")
    assert list(cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items) == []
    netns_dir = Path(cri.config["run_dir"]) / "netns"
    assert not netns_dir.exists() or not list(netns_dir.iterdir())
    assert ipam_allocations(cri) == []
    assert bridge_ports() == []
    assert f"--dport {port} " not in iptables_save()


def test_network_ready_follows_conf_dir(cri: Daemon) -> None:
    conf_dir = Path(cri.config["cni"]["conf_dir"])
    conf = conf_dir / "10-net-e2e.conflist"
    parked = cri.workdir / "parked.conflist"

    def wait_ready(expected: bool) -> api_pb2.RuntimeCondition:
        deadline = time.monotonic() + 10
        while True:
            cond = network_ready(cri)
            if cond.status is expected or time.monotonic() > deadline:
                return cond
            time.sleep(0.05)

    assert wait_ready(True).status
    conf.rename(parked)
    cond = wait_ready(False)
    assert not cond.status
    assert cond.reason == "NetworkPluginNotReady" and str(conf_dir) in cond.message
    parked.rename(conf)
    assert wait_ready(True).status
