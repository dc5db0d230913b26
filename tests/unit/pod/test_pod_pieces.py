"""Pod pieces without I/O: resolv.conf and hosts text, the create coalescer, record round trip."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cri_py.api import api_pb2
from cri_py.pod.files import hosts_text, resolv_conf_text
from cri_py.pod.inflight import CreateCoalescer
from cri_py.pod.model import SandboxRecord
from cri_py.pod.state import SandboxState
from cri_py.store.codec import encode_message
from cri_py.tasks import TaskOwner


def test_resolv_conf_from_dns_config(tmp_path: Path) -> None:
    dns = api_pb2.DNSConfig(servers=["10.10.10.10"], searches=["google.com"], options=["ndots:8"])
    assert resolv_conf_text(dns) == "nameserver 10.10.10.10\nsearch google.com\noptions ndots:8\n"
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 1.2.3.4\n")
    assert resolv_conf_text(None, host) == "nameserver 1.2.3.4\n"


def test_hosts_text(tmp_path: Path) -> None:
    text = hosts_text("web-0", "10.1.2.3", False)
    assert "127.0.0.1\tlocalhost" in text and text.endswith("10.1.2.3\tweb-0\n")
    host = tmp_path / "hosts"
    host.write_text("1.1.1.1 node\n")
    assert hosts_text("x", "", True, host) == "1.1.1.1 node\n"


def test_record_round_trip() -> None:
    cfg = api_pb2.PodSandboxConfig(metadata=api_pb2.PodSandboxMetadata(name="n", namespace="ns", uid="u"))
    rec = SandboxRecord(
        id="a" * 64, name="n", namespace="ns", uid="u", attempt=0, state=SandboxState.READY, created_at=1,
        runtime_handler="runc", config_b64=encode_message(cfg), pod_dir="/x", cgroup_parent="/p", hostname="n",
    )  # fmt: skip
    back = SandboxRecord.from_dict(rec.to_dict())
    assert back == rec and back.config().metadata.uid == "u"


def test_coalescer_hands_a_finished_result_to_the_retry() -> None:
    async def scenario() -> None:
        calls = 0
        gate = asyncio.Event()

        async def create() -> str:
            nonlocal calls
            calls += 1
            await gate.wait()
            return "id-1"

        owner = TaskOwner()
        co = CreateCoalescer(owner)
        first = asyncio.create_task(co.run("k", create))
        await asyncio.sleep(0)
        # a retry while the first still runs waits for the same work
        second = asyncio.create_task(co.run("k", create))
        await asyncio.sleep(0)
        first.cancel()  # the first client gave up
        gate.set()
        assert await second == "id-1"
        assert calls == 1
        # a create whose client gave up is kept for the next request
        gate.clear()
        third = asyncio.create_task(co.run("k2", create))
        await asyncio.sleep(0)
        third.cancel()
        gate.set()
        await asyncio.sleep(0.01)
        assert co.claim("k2") == "id-1"
        assert co.claim("k2") is None
        await owner.close()

    asyncio.run(scenario())
