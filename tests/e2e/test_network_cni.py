"""NetworkManager and pinned netns against the real CNI plugins (bridge, host-local, portmap).

The module has a bridge and subnet of its own and a FORWARD guard that keeps its pods from
reaching anything outside that subnet. In tests only, `nsenter`/`ip`/`iptables` are used to
look at the result.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cri_py.config.model import CniConfig
from cri_py.network import (
    CniPluginError,
    NetworkManager,
    PodNetworkRequest,
    create_pinned_netns,
    remove_pinned_netns,
)
from cri_py.network.capargs import PortMappingArg
from cri_py.network.netns import create_stand_in_netns, is_pinned_netns
from tests.e2e.daemon import drop_shared_portmap_chains, portmap_chains_exist

BRIDGE = "crinet0"
SUBNET = "10.213.77.0/24"
GUARD = ["FORWARD", "-s", SUBNET, "!", "-d", SUBNET, "-j", "DROP"]
FAKE_PLUGIN = Path(__file__).parents[1] / "unit" / "network" / "fake_cni_plugin"

pytestmark = pytest.mark.e2e


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30)


def iptables_save() -> str:
    return sh("iptables-save").stdout + sh("ip6tables-save").stdout


@pytest.fixture(scope="module")
def guarded_bridge() -> Iterator[None]:
    had_portmap_chains = portmap_chains_exist()
    sh("iptables", "-w", "-I", *GUARD)
    try:
        yield
    finally:
        sh("iptables", "-w", "-D", *GUARD, check=False)
        sh("ip", "link", "del", BRIDGE, check=False)
        if not had_portmap_chains:
            drop_shared_portmap_chains()


class NetEnv:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.conf = tmp / "net.d"
        self.conf.mkdir()
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.ipam = tmp / "ipam"
        self.cache = tmp / "cache"
        self.run_dir = tmp / "run"
        self.pods: list[tuple[str, Path]] = []
        self.managers: list[NetworkManager] = []

    def write_conf(self, extra_plugins: list[dict[str, Any]] | None = None) -> Path:
        doc = {
            "cniVersion": "1.0.0",
            "name": "crinet-e2e",
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
                        "dataDir": str(self.ipam),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
                *(extra_plugins or []),
                {"type": "loopback"},
            ],
        }
        path = self.conf / "10-crinet.conflist"
        path.write_text(json.dumps(doc))
        return path

    def manager(self) -> NetworkManager:
        cfg = CniConfig(conf_dir=self.conf, bin_dirs=(Path("/usr/lib/cni"), self.bin), cache_dir=self.cache)
        m = NetworkManager(cfg, self.run_dir, poll_interval=0.05, retry_interval=0.2)
        self.managers.append(m)
        return m

    def new_pod(self, index: int) -> tuple[str, Path]:
        pod_id = f"{index:02d}" + "e" * 62
        netns = create_pinned_netns(self.run_dir, pod_id)
        self.pods.append((pod_id, netns))
        return pod_id, netns

    def request(self, pod_id: str, netns: Path, **kw: Any) -> PodNetworkRequest:
        return PodNetworkRequest(pod_id, f"pod-{pod_id[:2]}", "crinet", f"uid-{pod_id[:2]}", netns, **kw)

    def allocations(self) -> list[str]:
        net_dir = self.ipam / "crinet-e2e"
        if not net_dir.is_dir():
            return []
        return sorted(p.name for p in net_dir.iterdir() if p.name[0].isdigit())


def bridge_ports() -> list[str]:
    out = sh("ip", "-o", "link", "show", "master", BRIDGE, check=False).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line.strip()]


@pytest.fixture
def net(tmp_path: Path, guarded_bridge: None) -> Iterator[NetEnv]:
    env = NetEnv(tmp_path)
    yield env
    for m in env.managers:
        asyncio.run(m.stop())
    cleanup = env.manager()
    for pod_id, netns in env.pods:
        try:
            asyncio.run(cleanup.teardown(pod_id, netns))
        finally:
            remove_pinned_netns(netns)


def in_netns(netns: Path, code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["nsenter", f"--net={netns}", sys.executable, "-I", "-S", "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


SERVER = """
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", {port}))
srv.listen(8)
print("ready", flush=True)
srv.settimeout(20)
while True:
    conn, peer = srv.accept()
    with conn:
        conn.recv(100)
        conn.sendall(("hello " + peer[0]).encode())
"""

CLIENT = """
import socket
with socket.create_connection(("{ip}", {port}), timeout=5) as c:
    c.sendall(b"hi")
    print(c.recv(100).decode())
"""


def start_server(netns: Path, port: int) -> subprocess.Popen[str]:
    proc = in_netns(netns, SERVER.format(port=port))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read() if proc.stderr else line
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(timeout=10)


def test_two_pods_reach_each_other_and_teardown_leaves_nothing(net: NetEnv) -> None:
    net.write_conf()
    pod_a, ns_a = net.new_pod(1)
    pod_b, ns_b = net.new_pod(2)

    async def setup() -> tuple[Any, Any, Any]:
        m = net.manager()
        await m.start(lambda: {pod_a, pod_b})
        assert m.status() == (True, "", "")
        res_a, res_b = await asyncio.gather(
            m.setup(net.request(pod_a, ns_a)), m.setup(net.request(pod_b, ns_b))
        )
        verified = await m.verified_pod_ips(pod_a)
        await m.stop()
        return res_a, res_b, verified

    res_a, res_b, verified = asyncio.run(setup())
    assert res_a.ip.startswith("10.213.77.") and res_b.ip.startswith("10.213.77.")
    assert res_a.ip != res_b.ip
    assert verified is not None and verified.ip == res_a.ip
    assert len(net.allocations()) == 2
    assert len(bridge_ports()) == 2

    server = start_server(ns_a, 7070)
    try:
        client = in_netns(ns_b, CLIENT.format(ip=res_a.ip, port=7070))
        out, err = client.communicate(timeout=20)
        assert client.returncode == 0, err
        assert out.strip() == f"hello {res_b.ip}"
    finally:
        stop(server)

    m = net.manager()
    stats = asyncio.run(m.pod_interface_stats(pod_a, ns_a))
    assert set(stats) == {"eth0"}
    rx, tx = stats["eth0"]
    assert rx > 0 and tx > 0

    rules_before = iptables_save()
    assert pod_a in rules_before  # the bridge's masquerade rule names the container

    async def teardown() -> None:
        await m.teardown(pod_a, ns_a)
        await m.teardown(pod_b, ns_b)
        await m.teardown(pod_b, ns_b)  # a second DEL is fine

    asyncio.run(teardown())
    for _, netns in net.pods:
        remove_pinned_netns(netns)
        assert not netns.exists()
    assert m.pod_ips(pod_a) is None
    assert net.allocations() == []
    assert bridge_ports() == []
    rules = iptables_save()
    for needle in (pod_a, pod_b, res_a.ip, res_b.ip):
        assert needle not in rules
    assert not list((net.cache / "results").iterdir())


def test_host_port_answers_on_localhost(net: NetEnv) -> None:
    net.write_conf()
    pod, netns = net.new_pod(3)
    with socket.socket() as probe:  # a host port nobody uses now
        probe.bind(("127.0.0.1", 0))
        host_port = probe.getsockname()[1]

    async def setup() -> Any:
        m = net.manager()
        await m.start(lambda: {pod})
        try:
            return await m.setup(net.request(pod, netns, port_mappings=[PortMappingArg(host_port, 8080)]))
        finally:
            await m.stop()

    result = asyncio.run(setup())
    server = start_server(netns, 8080)
    try:
        with socket.create_connection(("127.0.0.1", host_port), timeout=5) as conn:
            conn.sendall(b"hi")
            answer = conn.recv(100).decode()
        # portmap masquerades localhost traffic, so the pod sees the bridge gateway
        assert answer.startswith("hello 10.213.77.")
    finally:
        stop(server)
    assert f"--dport {host_port}" in iptables_save()

    m = net.manager()
    asyncio.run(m.teardown(pod, netns))
    rules = iptables_save()
    assert f"--dport {host_port}" not in rules
    assert pod not in rules and result.ip not in rules
    assert net.allocations() == []


def test_failing_plugin_leaves_nothing(net: NetEnv) -> None:
    shutil.copy(FAKE_PLUGIN, net.bin / "refuse")
    net.write_conf(
        [{"type": "refuse", "fail": {"ADD": {"code": 142, "msg": "quota exceeded", "details": "x"}}}]
    )
    pod, netns = net.new_pod(4)
    rules_before = iptables_save()

    async def go() -> None:
        m = net.manager()
        await m.start(set)
        try:
            with pytest.raises(CniPluginError) as info:
                await m.setup(net.request(pod, netns, port_mappings=[PortMappingArg(18999, 80)]))
            assert info.value.code == 142
            assert "refuse" in str(info.value) and "quota exceeded" in str(info.value)
        finally:
            await m.stop()

    asyncio.run(go())
    assert net.allocations() == []
    assert bridge_ports() == []
    assert iptables_save().count(pod) == rules_before.count(pod) == 0
    assert "18999" not in iptables_save()
    assert not list((net.cache / "results").iterdir())
    assert is_pinned_netns(netns)  # the namespace is the caller's to remove


def test_restart_between_add_and_del(net: NetEnv) -> None:
    net.write_conf()
    pod, netns = net.new_pod(5)

    async def add() -> Any:
        m = net.manager()
        await m.start(lambda: {pod})
        try:
            return await m.setup(net.request(pod, netns, port_mappings=[PortMappingArg(18998, 80)]))
        finally:
            await m.stop()

    result = asyncio.run(add())
    # the conf changes meanwhile; DEL still runs the chain the pod was set up with
    (net.conf / "10-crinet.conflist").unlink()

    async def delete() -> None:
        m = net.manager()  # a fresh instance: nothing in memory, only the cache dir
        await m.start(lambda: {pod})
        try:
            again = m.pod_ips(pod)
            assert again is not None and again.ip == result.ip
            remove_pinned_netns(netns)  # the namespace may be gone before the DEL
            await m.teardown(pod, netns)
        finally:
            await m.stop()

    asyncio.run(delete())
    rules = iptables_save()
    assert pod not in rules and "18998" not in rules
    assert net.allocations() == []
    assert bridge_ports() == []


def test_start_up_gc_releases_pods_that_are_gone(net: NetEnv) -> None:
    net.write_conf()
    pod, netns = net.new_pod(6)

    async def go() -> None:
        m = net.manager()
        await m.start(lambda: {pod})
        await m.setup(net.request(pod, netns))
        await m.stop()
        assert len(net.allocations()) == 1
        # as if a daemon had died during a DEL through a stand-in namespace
        stale = create_stand_in_netns(net.run_dir, "9" * 64, "eth0", ["10.213.77.250/24"])
        m2 = net.manager()
        await m2.start(set)
        await m2.stop()
        assert not stale.exists()

    asyncio.run(go())
    assert net.allocations() == []
    assert pod not in iptables_save()


def test_readiness_flips_with_conf_dir(net: NetEnv) -> None:
    async def wait(m: NetworkManager, ready: bool) -> None:
        deadline = time.monotonic() + 10
        while m.status()[0] is not ready:
            assert time.monotonic() < deadline, m.status()
            await asyncio.sleep(0.02)

    async def go() -> None:
        m = net.manager()
        await m.start(set)
        try:
            assert m.status()[:2] == (False, "NetworkPluginNotReady")
            path = net.write_conf()
            await wait(m, True)
            path.unlink()
            await wait(m, False)
        finally:
            await m.stop()

    asyncio.run(go())


def test_pinned_netns_has_loopback_up_and_is_removed(tmp_path: Path) -> None:
    netns = create_pinned_netns(tmp_path, "f" * 64)
    try:
        assert is_pinned_netns(netns)
        out = sh("nsenter", f"--net={netns}", "ip", "-o", "link", "show", "lo").stdout
        assert "UP" in out.split(">")[0]
        assert sh("nsenter", f"--net={netns}", "ip", "-o", "link").stdout.count("\n") == 1
    finally:
        remove_pinned_netns(netns)
    remove_pinned_netns(netns)  # idempotent
    assert not netns.exists()
    assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()


def test_bandwidth_annotations_reach_the_bandwidth_plugin(net: NetEnv) -> None:
    net.write_conf([{"type": "bandwidth", "capabilities": {"bandwidth": True}}])
    pod, netns = net.new_pod(7)
    ifb_before = sh("ip", "-o", "link", "show", "type", "ifb").stdout

    async def setup() -> Any:
        m = net.manager()
        await m.start(lambda: {pod})
        try:
            return await m.setup(
                net.request(
                    pod,
                    netns,
                    annotations={
                        "kubernetes.io/ingress-bandwidth": "1M",
                        "kubernetes.io/egress-bandwidth": "2M",
                    },
                )
            )
        finally:
            await m.stop()

    result = asyncio.run(setup())
    host_veth = next(name for name in result.interfaces if name.startswith("veth"))
    # pod ingress is shaped on the host end of the veth; egress through an ifb device
    assert "tbf" in sh("tc", "qdisc", "show", "dev", host_veth).stdout
    ifb_during = sh("ip", "-o", "link", "show", "type", "ifb").stdout
    added = [line for line in ifb_during.splitlines() if line not in ifb_before.splitlines()]
    assert len(added) == 1
    ifb_name = added[0].split(":")[1].strip()
    assert "tbf" in sh("tc", "qdisc", "show", "dev", ifb_name).stdout

    asyncio.run(net.manager().teardown(pod, netns))
    assert ifb_name not in sh("ip", "-o", "link").stdout
    assert net.allocations() == []
