"""NetworkManager against a scripted CNI plugin (no root, no real network)."""

import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from cri_py.api import api_pb2
from cri_py.config.model import CniConfig
from cri_py.errors import FailedPrecondition, Internal
from cri_py.network import CniPluginError, NetworkManager, PodNetworkRequest
from cri_py.network.capargs import PortMappingArg

FAKE = Path(__file__).with_name("fake_cni_plugin")
POD_A = "a" * 64
POD_B = "b" * 64
V11 = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bin = tmp / "bin"
        self.conf = tmp / "conf"
        self.cache = tmp / "cache"
        self.state = tmp / "state"
        self.log = tmp / "calls.jsonl"
        self.bin.mkdir()
        self.conf.mkdir()
        self.netns = tmp / "netns-a"
        self.netns.touch()

    def plugin(self, name: str, versions: list[str] | None = None) -> None:
        shutil.copy(FAKE, self.bin / name)
        side: dict[str, Any] = {"log": str(self.log)}
        if versions:
            side["versions"] = versions
        (self.bin / f"{name}.json").write_text(json.dumps(side))

    def write_conf(
        self, filename: str, plugins: list[dict[str, Any]], version: str = "1.0.0", **extra: Any
    ) -> Path:
        for p in plugins:
            p.setdefault("log", str(self.log))
        doc = {"cniVersion": version, "name": filename.split(".")[0], "plugins": plugins, **extra}
        path = self.conf / filename
        path.write_text(json.dumps(doc))
        return path

    def calls(self, command: str | None = None) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [c for c in lines if command is None or c["command"] == command]

    def manager(self, **kw: Any) -> NetworkManager:
        cfg = CniConfig(conf_dir=self.conf, bin_dirs=(self.tmp / "nowhere", self.bin), cache_dir=self.cache)
        kw.setdefault("poll_interval", 0.02)
        kw.setdefault("retry_interval", 0.1)
        # the netns here is a plain file; a stand-in namespace would need root
        kw.setdefault("stand_in_netns", False)
        return NetworkManager(cfg, self.tmp / "run", **kw)

    def request(self, pod_id: str = POD_A, **kw: Any) -> PodNetworkRequest:
        return PodNetworkRequest(pod_id, "web", "default", "uid-1", self.netns, **kw)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    e = Env(tmp_path)
    e.plugin("fakeip")
    e.plugin("fakechain")
    return e


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def chain_conf(env: Env, **fail: Any) -> None:
    env.write_conf(
        "10-net.conflist",
        [
            {"type": "fakeip", "ip": "10.9.0.5/24,fd00::5/64", "stateDir": str(env.state)},
            {"type": "fakechain", "capabilities": {"portMappings": True, "dns": True}, **fail},
            {"type": "loopback"},
        ],
    )
    env.plugin("loopback")


def test_add_chain_env_prev_result_and_runtime_config(env: Env) -> None:
    chain_conf(env)

    async def go() -> Any:
        m = env.manager()
        await m.start(set)
        try:
            return await m.setup(
                env.request(
                    port_mappings=[PortMappingArg(8080, 80), PortMappingArg(0, 81)],
                    dns=api_pb2.DNSConfig(servers=["10.0.0.10"]),
                    annotations={"kubernetes.io/ingress-bandwidth": "1M"},
                )
            )
        finally:
            await m.stop()

    result = run(go())
    assert result.ip == "10.9.0.5"
    assert result.additional_ips == ["fd00::5"]
    adds = env.calls("ADD")
    assert [c["plugin"] for c in adds] == ["fakeip", "fakechain"]  # loopback skipped: lo is up already
    first, second = adds
    assert first["env"]["CNI_CONTAINERID"] == POD_A
    assert first["env"]["CNI_NETNS"] == str(env.netns)
    assert first["env"]["CNI_IFNAME"] == "eth0"
    assert first["env"]["CNI_PATH"] == f"{env.tmp / 'nowhere'}:{env.bin}"
    assert first["env"]["CNI_ARGS"] == (
        f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID={POD_A};K8S_POD_UID=uid-1"
    )
    assert "prevResult" not in first["stdin"] and "runtimeConfig" not in first["stdin"]
    assert second["stdin"]["prevResult"]["ips"][0]["address"] == "10.9.0.5/24"
    assert second["stdin"]["runtimeConfig"] == {
        "dns": {"servers": ["10.0.0.10"], "searches": [], "options": []},
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""}],
    }
    # no VERSION per pod: only the two load-time calls
    assert len(env.calls("VERSION")) == 3


def test_del_after_restart_uses_cached_result(env: Env) -> None:
    chain_conf(env)

    async def go() -> None:
        m = env.manager()
        await m.start(set)
        await m.setup(env.request())
        await m.stop()
        # the conf goes away: the cached copy still drives DEL
        (env.conf / "10-net.conflist").unlink()
        m2 = env.manager()
        await m2.start(lambda: {POD_A})
        assert m2.pod_ips(POD_A) is not None
        assert m2.pod_ips(POD_A).ip == "10.9.0.5"  # type: ignore[union-attr]
        await m2.teardown(POD_A, env.netns)
        await m2.teardown(POD_A, env.netns)  # idempotent
        assert m2.pod_ips(POD_A) is None
        await m2.stop()

    run(go())
    dels = env.calls("DEL")
    assert [c["plugin"] for c in dels] == ["fakechain", "fakeip"]
    assert all(c["stdin"]["prevResult"]["ips"][0]["address"] == "10.9.0.5/24" for c in dels)
    # the netns is a plain file, not a pinned namespace: DEL goes without CNI_NETNS
    assert all("CNI_NETNS" not in c["env"] for c in dels)
    assert not any(env.state.iterdir())
    assert not list((env.cache / "results").iterdir())


def test_failed_add_runs_del_and_leaves_nothing(env: Env) -> None:
    chain_conf(env, fail={"ADD": {"code": 117, "msg": "no more ports", "details": "range full"}})

    async def go() -> None:
        m = env.manager()
        await m.start(set)
        with pytest.raises(CniPluginError) as info:
            await m.setup(env.request())
        assert isinstance(info.value, Internal)
        assert info.value.code == 117
        assert "no more ports" in str(info.value) and "range full" in str(info.value)
        assert m.pod_ips(POD_A) is None
        await m.stop()

    run(go())
    assert [c["plugin"] for c in env.calls("DEL")] == ["fakechain", "fakeip"]
    assert not any(env.state.iterdir())
    assert not list((env.cache / "results").iterdir())


def test_failed_del_keeps_cache_and_is_retried(env: Env) -> None:
    broken = env.tmp / "broken"
    broken.touch()
    chain_conf(env, fail={"DEL": {"stderr": "iptables: lock held", "whileFile": str(broken)}})

    async def go() -> None:
        m = env.manager()
        await m.start(set)
        await m.setup(env.request())
        with pytest.raises(Internal, match="iptables: lock held"):
            await m.teardown(POD_A, None)
        assert (env.cache / "results" / f"{POD_A}.json").exists()
        # the plugin recovers; the next start-up GC releases the pod that no longer exists
        broken.unlink()
        await m.stop()
        m2 = env.manager()
        await m2.start(set)
        await m2.stop()

    run(go())
    assert not list((env.cache / "results").iterdir())
    assert not any(env.state.iterdir())


def test_gc_releases_only_unknown_pods(env: Env) -> None:
    chain_conf(env)

    async def go() -> None:
        m = env.manager()
        await m.start(set)
        await m.setup(env.request(POD_A))
        await m.setup(env.request(POD_B))
        await m.stop()
        m2 = env.manager()
        await m2.start(lambda: {POD_B})
        await m2.stop()

    run(go())
    assert sorted(p.name for p in env.state.iterdir()) == [POD_B]
    assert [c["env"]["CNI_CONTAINERID"] for c in env.calls("DEL")] == [POD_A, POD_A]


def test_invalid_confs_skipped_and_lexical_first_is_default(env: Env) -> None:
    (env.conf / "00-broken.conflist").write_text("{")
    env.write_conf("05-missing.conflist", [{"type": "nosuchplugin"}])
    env.write_conf("10-second.conf", [{"type": "fakeip", "ip": "10.1.0.2/24"}])
    env.write_conf("20-third.conflist", [{"type": "fakeip", "ip": "10.2.0.2/24"}])
    (env.conf / "README").write_text("not a conf")

    async def go() -> Any:
        m = env.manager()
        await m.start(set)
        try:
            assert m.status() == (True, "", "")
            return await m.setup(env.request())
        finally:
            await m.stop()

    assert run(go()).network == "10-second"


def test_readiness_follows_the_conf_dir(env: Env) -> None:
    async def wait_for(m: NetworkManager, ready: bool) -> tuple[bool, str, str]:
        for _ in range(250):
            status = m.status()
            if status[0] is ready:
                return status
            await asyncio.sleep(0.02)
        raise AssertionError(f"status stayed {m.status()}")

    async def go() -> None:
        m = env.manager()
        await m.start(set)
        try:
            ready, reason, message = m.status()
            assert not ready and reason == "NetworkPluginNotReady"
            assert str(env.conf) in message
            with pytest.raises(FailedPrecondition):
                await m.setup(env.request())
            path = env.write_conf("10-net.conflist", [{"type": "fakeip", "ip": "10.1.0.2/24"}])
            await wait_for(m, True)
            path.unlink()
            await wait_for(m, False)
            # a conf whose plugin is missing is not enough, and the status says why
            env.write_conf("10-net.conflist", [{"type": "later"}])
            for _ in range(250):
                if "later" in m.status()[2]:
                    break
                await asyncio.sleep(0.02)
            assert not m.status()[0]
            assert "plugin binaries not found: later" in m.status()[2]
            env.plugin("later")
            await wait_for(m, True)
        finally:
            await m.stop()

    run(go())


def test_cni_1_1_status_and_gc(env: Env) -> None:
    env.plugin("fake11", versions=V11)
    flag = env.tmp / "not-ready"
    env.write_conf(
        "10-new.conflist",
        [{"type": "fake11", "ip": "10.3.0.2/24", "stateDir": str(env.state), "statusFile": str(flag)}],
        version="1.1.0",
    )

    async def go() -> None:
        m = env.manager(status_interval=0.05)
        await m.start(set)
        await m.setup(env.request(POD_A))
        assert m.status()[0]
        flag.write_text("bridge gone")
        for _ in range(200):
            if not m.status()[0]:
                break
            await asyncio.sleep(0.02)
        ready, reason, message = m.status()
        assert not ready and reason == "NetworkPluginNotReady"
        assert "code 50" in message and "bridge gone" in message
        flag.unlink()
        await m.stop()
        # a leftover attachment the cache does not know: plugin GC removes it
        (env.state / "orphan").touch()
        m2 = env.manager()
        await m2.start(lambda: {POD_A})
        await m2.stop()

    run(go())
    gc = env.calls("GC")
    assert gc, "GC was not sent"
    assert gc[-1]["stdin"]["cni.dev/valid-attachments"] == [{"containerID": POD_A, "ifname": "eth0"}]
    assert set(gc[-1]["env"]) == {"CNI_COMMAND", "CNI_PATH"}
    assert sorted(p.name for p in env.state.iterdir()) == [POD_A]
    status_calls = env.calls("STATUS")
    assert status_calls and "prevResult" not in status_calls[0]["stdin"]


def test_no_status_or_gc_below_1_1(env: Env) -> None:
    env.write_conf("10-net.conflist", [{"type": "fakeip", "ip": "10.1.0.2/24"}], version="0.4.0")

    async def go() -> None:
        m = env.manager()
        await m.start(set)
        await m.stop()

    run(go())
    assert not env.calls("STATUS") and not env.calls("GC")


def test_cni_versions_settles_on_common_version(env: Env) -> None:
    env.plugin("fake11", versions=V11)
    env.write_conf(
        "10-net.conflist",
        [{"type": "fake11", "ip": "10.3.0.2/24"}, {"type": "fakeip"}],
        version="1.0.0",
        cniVersions=["1.0.0", "1.1.0"],
    )

    async def go() -> None:
        m = env.manager()
        await m.start(set)
        await m.setup(env.request())
        await m.stop()

    run(go())
    assert {c["stdin"]["cniVersion"] for c in env.calls("ADD")} == {"1.0.0"}


def test_interleaved_pods_share_nothing(env: Env) -> None:
    chain_conf(env)

    async def go() -> list[str]:
        m = env.manager()
        await m.start(set)
        pods = [f"{i:064x}" for i in range(3)]
        results = await asyncio.gather(*(m.setup(env.request(p)) for p in pods))
        await asyncio.gather(*(m.teardown(p, None) for p in pods))
        await m.stop()
        return [r.ip for r in results]

    assert run(go()) == ["10.9.0.5"] * 3
    assert not any(env.state.iterdir())


def test_portmap_without_mappings_is_not_run_on_add_or_del(env: Env) -> None:
    env.plugin("portmap")
    env.write_conf(
        "10-net.conflist",
        [
            {"type": "fakeip", "ip": "10.1.0.2/24"},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    )

    async def go() -> None:
        m = env.manager()
        await m.start(set)
        await m.setup(env.request(POD_A))
        await m.setup(env.request(POD_B, port_mappings=[PortMappingArg(8080, 80)]))
        await m.teardown(POD_A, None)
        await m.teardown(POD_B, None)
        await m.stop()

    run(go())
    assert [(c["plugin"], c["env"]["CNI_CONTAINERID"]) for c in env.calls("ADD")] == [
        ("fakeip", POD_A),
        ("fakeip", POD_B),
        ("portmap", POD_B),
    ]
    # DEL runs what ADD ran, in reverse: portmap only where it programmed mappings
    assert [(c["plugin"], c["env"]["CNI_CONTAINERID"]) for c in env.calls("DEL")] == [
        ("fakeip", POD_A),
        ("portmap", POD_B),
        ("fakeip", POD_B),
    ]


def test_inotify_flips_readiness_without_waiting_for_the_poll(env: Env) -> None:
    async def go() -> float:
        m = env.manager(poll_interval=30.0)  # only inotify can be this quick
        await m.start(set)
        try:
            assert not m.status()[0]
            started = time.monotonic()
            env.write_conf("10-net.conflist", [{"type": "fakeip", "ip": "10.1.0.2/24"}])
            while not m.status()[0]:
                assert time.monotonic() - started < 10, m.status()
                await asyncio.sleep(0.01)
            return time.monotonic() - started
        finally:
            await m.stop()

    assert run(go()) < 5


def test_watch_survives_conf_dir_created_later(env: Env) -> None:
    shutil.rmtree(env.conf)

    async def go() -> None:
        m = env.manager()
        await m.start(set)
        try:
            assert not m.status()[0]
            env.conf.mkdir()
            await asyncio.sleep(0.1)
            env.write_conf("10-net.conflist", [{"type": "fakeip", "ip": "10.1.0.2/24"}])
            for _ in range(500):
                if m.status()[0]:
                    break
                await asyncio.sleep(0.01)
            assert m.status()[0]
        finally:
            await m.stop()

    run(go())
