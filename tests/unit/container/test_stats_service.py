"""Stats from record snapshots: one cgroup read per container, removals mid-request, samples forgotten."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cri_py.api import api_pb2
from cri_py.config.model import Config
from cri_py.container.model import ContainerRecord
from cri_py.container.query import ContainerQueries
from cri_py.container.state import ContainerState
from cri_py.container.stats_service import StatsService
from cri_py.container.store import ContainerStore
from cri_py.events import EventBus
from cri_py.oci.cgroups import CgroupUsage
from cri_py.pod.model import SandboxRecord
from cri_py.pod.query import PodQueries
from cri_py.pod.state import SandboxState
from cri_py.pod.store import SandboxStore
from cri_py.store import Database
from cri_py.store.codec import encode_message

POD = "p" * 64


class FakeRootfs:
    def mountpoint(self) -> Path:
        return Path("/var/lib/cri-py/rootfs")

    def usage(self, cid: str) -> tuple[int, int]:
        return (4096, 3)


class FakeRuntime:
    """The runtime seam: reads a container's cgroup (in a thread, as the real one does)."""

    def __init__(self) -> None:
        self.read_usage: Any = lambda rel: None

    def get(self, name: str) -> FakeRuntime:
        return self

    async def stats(self, cgroups_path: str) -> CgroupUsage | None:
        return await asyncio.to_thread(self.read_usage, cgroups_path.strip("/"))


class Env:
    def __init__(self, tmp_path: Path) -> None:
        db = Database(tmp_path / "state.db")
        bus = EventBus()
        self.pods = SandboxStore(db, bus)
        self.containers = ContainerStore(db, bus)
        config = Config(root=tmp_path / "root", run_dir=tmp_path / "run")
        self.runtime = FakeRuntime()
        self.stats = StatsService(
            config,
            ContainerQueries(self.containers),
            self.pods,
            PodQueries(config, self.pods, None),  # type: ignore[arg-type]
            FakeRootfs(),  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]  # pods without a netns ask the network nothing
            self.runtime,  # type: ignore[arg-type]
            bus,
        )
        cfg = api_pb2.PodSandboxConfig(metadata=api_pb2.PodSandboxMetadata(name="n", namespace="ns", uid="u"))
        pod = SandboxRecord(
            id=POD, name="n", namespace="ns", uid="u", attempt=0, state=SandboxState.CREATING, created_at=1,
            runtime_handler="runc", config_b64=encode_message(cfg), pod_dir="/x", cgroup_parent="/p", hostname="n",
        )  # fmt: skip
        self.pod = self.pods.transition(self.pods.insert(pod), SandboxState.READY)
        self.running = [self.add_running(name) for name in ("a", "b")]

    def add_running(self, name: str) -> ContainerRecord:
        cfg = api_pb2.ContainerConfig(metadata=api_pb2.ContainerMetadata(name=name))
        rec = ContainerRecord(
            id=name * 64, pod_id=POD, name=name, attempt=0, state=ContainerState.CREATING, created_at=1,
            runtime_handler="runc", config_b64=encode_message(cfg), image_id="i", image_ref="i", image_name="i",
            bundle="/b", cgroups_path=f"/pods/{name}",
        )  # fmt: skip
        created = self.containers.transition(self.containers.insert(rec), ContainerState.CREATED)
        return self.containers.transition(created, ContainerState.RUNNING, started_at=2)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_pod_stats_read_each_cgroup_once_and_survive_a_removal(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    reading = threading.Event()

    def fake_read_usage(relpath: str) -> CgroupUsage:
        reads.append(relpath)
        reading.set()
        time.sleep(0.05)  # the container is removed while its cgroup is read
        return CgroupUsage(time.time_ns(), 1000, 10, 10, 10, 0, 0, 0, 1)

    env.runtime.read_usage = fake_read_usage

    async def scenario() -> list[api_pb2.PodSandboxStats]:
        listing = asyncio.create_task(env.stats.list_pod_stats(api_pb2.PodSandboxStatsFilter()))
        await asyncio.to_thread(reading.wait)
        env.containers.delete(env.running[1])
        return await listing

    [pod] = asyncio.run(scenario())
    assert sorted(reads) == ["pods/a", "pods/b"]  # once each, not once more for the pod's sum
    assert {c.attributes.id for c in pod.linux.containers} == {r.id for r in env.running}
    assert pod.linux.cpu.usage_core_nano_seconds.value == 2000


def test_cpu_samples_of_removed_objects_are_forgotten(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.runtime.read_usage = lambda rel: CgroupUsage(time.time_ns(), 5, 1, 1, 1, 0, 0, 0, 1)

    async def scenario() -> None:
        await env.stats.pod_stats(POD)
        assert env.stats.samples_kept == 3  # the pod and its two containers
        for rec in env.running:
            env.containers.delete(rec)
        env.pods.delete(env.pod)
        assert env.stats.samples_kept == 0

    asyncio.run(scenario())


def test_list_container_stats_skips_what_is_gone(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    def gone_meanwhile(rel: str) -> Any:
        return None  # the cgroup went with its container

    env.runtime.read_usage = gone_meanwhile
    stats = asyncio.run(env.stats.list_container_stats(api_pb2.ContainerStatsFilter()))
    assert len(stats) == 2 and all(s.cpu.usage_core_nano_seconds.value == 0 for s in stats)
