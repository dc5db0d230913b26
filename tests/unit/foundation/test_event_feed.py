"""The GetContainerEvents feed: statuses captured at publish time, bounded streams, recovery backlog."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from cri_py.api import api_pb2
from cri_py.container.model import ContainerRecord
from cri_py.container.state import ContainerState
from cri_py.container.store import ContainerStore
from cri_py.event_feed import ContainerEventFeed, PodEvent
from cri_py.events import EventBus, SubscriptionLagged
from cri_py.pod.model import SandboxRecord
from cri_py.pod.state import SandboxState
from cri_py.pod.store import SandboxStore
from cri_py.store import Database
from cri_py.store.codec import encode_message

POD = "p" * 64


def _pod() -> SandboxRecord:
    cfg = api_pb2.PodSandboxConfig(metadata=api_pb2.PodSandboxMetadata(name="web", namespace="ns", uid="u1"))
    return SandboxRecord(
        id=POD, name="web", namespace="ns", uid="u1", attempt=0, state=SandboxState.CREATING, created_at=1,
        runtime_handler="runc", config_b64=encode_message(cfg), pod_dir="/x", cgroup_parent="/p", hostname="web",
    )  # fmt: skip


def _ctr(cid: str, created_at: int) -> ContainerRecord:
    cfg = api_pb2.ContainerConfig(metadata=api_pb2.ContainerMetadata(name=f"c{created_at}"))
    return ContainerRecord(
        id=cid, pod_id=POD, name=f"c{created_at}", attempt=0, state=ContainerState.CREATING,
        created_at=created_at, runtime_handler="runc", config_b64=encode_message(cfg), image_id="sha256:i",
        image_ref="r", image_name="busybox", bundle="/b",
    )  # fmt: skip


class Env:
    def __init__(self, tmp_path: Path, buffer: int = 1000, replay_s: float = 60.0) -> None:
        db = Database(tmp_path / "state.db")
        self.bus = EventBus()
        self.pods = SandboxStore(db, self.bus)
        self.ctrs = ContainerStore(db, self.bus)
        self.feed = ContainerEventFeed(self.bus, self.pods, self.ctrs, buffer=buffer, replay_s=replay_s)


def _drain(sub: object) -> list[PodEvent]:
    out = []
    while (item := sub.get_nowait()) is not None:  # type: ignore[attr-defined]
        out.append(item)
    return out


def test_each_event_carries_the_pod_as_it_was_then(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.feed.serving()
    sub = env.feed.subscription()
    pod = env.pods.transition(env.pods.insert(_pod()), SandboxState.READY)
    a = env.ctrs.transition(env.ctrs.insert(_ctr("a" * 64, 10)), ContainerState.CREATED)
    a = env.ctrs.transition(a, ContainerState.RUNNING, started_at=11)
    b = env.ctrs.transition(env.ctrs.insert(_ctr("b" * 64, 20)), ContainerState.CREATED)
    a = env.ctrs.transition(a, ContainerState.EXITED, exit_code=3)
    env.ctrs.delete(a)
    env.pods.transition(pod, SandboxState.NOTREADY)
    # read only now: what each event says was fixed when it was published
    got = [item.response for item in _drain(sub)]
    kinds = [(e.container_id[:1], e.container_event_type) for e in got]
    assert kinds == [
        ("p", api_pb2.CONTAINER_CREATED_EVENT), ("p", api_pb2.CONTAINER_STARTED_EVENT),
        ("a", api_pb2.CONTAINER_CREATED_EVENT), ("a", api_pb2.CONTAINER_STARTED_EVENT),
        ("b", api_pb2.CONTAINER_CREATED_EVENT), ("a", api_pb2.CONTAINER_STOPPED_EVENT),
        ("a", api_pb2.CONTAINER_DELETED_EVENT), ("p", api_pb2.CONTAINER_STOPPED_EVENT),
    ]  # fmt: skip
    states = [[(s.id[:1], s.state) for s in e.containers_statuses] for e in got]
    assert states[2] == [("a", api_pb2.CONTAINER_CREATED)]
    # newest first, as kubelet orders them
    assert states[4] == [("b", api_pb2.CONTAINER_CREATED), ("a", api_pb2.CONTAINER_RUNNING)]
    assert states[5] == [("b", api_pb2.CONTAINER_CREATED), ("a", api_pb2.CONTAINER_EXITED)]
    assert got[5].containers_statuses[1].exit_code == 3
    assert states[6] == [("b", api_pb2.CONTAINER_CREATED)]  # the deleted one is gone
    assert got[1].pod_sandbox_status.state == api_pb2.SANDBOX_READY
    assert got[6].pod_sandbox_status.state == api_pb2.SANDBOX_READY  # a container's removal
    assert got[7].pod_sandbox_status.state == api_pb2.SANDBOX_NOTREADY
    assert {e.pod_sandbox_status.metadata.uid for e in got} == {"u1"}
    stamps = [e.created_at for e in got]
    assert stamps == sorted(stamps) and stamps[0] > 0
    assert b.state == ContainerState.CREATED


def test_a_slow_stream_is_ended_not_waited_for(tmp_path: Path) -> None:
    env = Env(tmp_path, buffer=3)
    env.feed.serving()
    slow, fast = env.feed.subscription(), env.feed.subscription()
    pod = env.pods.insert(_pod())
    started = time.monotonic()
    for i in range(10):
        c = env.ctrs.insert(_ctr(f"{i:064d}", i))
        env.ctrs.delete(env.ctrs.transition(c, ContainerState.CREATED))
        assert len(_drain(fast)) == 2  # a reader that keeps up loses nothing
    assert time.monotonic() - started < 1.0  # publishing never waited for the slow one
    assert pod.state == SandboxState.CREATING

    async def read_all() -> int:
        n = 0
        async for _item in slow:
            n += 1
        return n

    with pytest.raises(SubscriptionLagged):
        asyncio.run(read_all())
    env.feed.release(slow)
    assert env.feed.streams == 1


def test_nothing_is_captured_without_a_stream_once_serving(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.feed.serving()
    env.pods.transition(env.pods.insert(_pod()), SandboxState.READY)
    assert env.feed.captured == 0
    sub = env.feed.subscription()
    env.ctrs.transition(env.ctrs.insert(_ctr("a" * 64, 1)), ContainerState.CREATED)
    assert env.feed.captured == 1 and len(_drain(sub)) == 1


def test_recovery_events_are_replayed_to_streams_for_a_while(tmp_path: Path) -> None:
    env = Env(tmp_path, replay_s=0.2)
    # recovery: before serving, a container found exited
    pod = env.pods.transition(env.pods.insert(_pod()), SandboxState.READY)
    c = env.ctrs.transition(env.ctrs.insert(_ctr("a" * 64, 1)), ContainerState.CREATED)
    c = env.ctrs.transition(c, ContainerState.RUNNING)
    env.ctrs.transition(c, ContainerState.EXITED, exit_code=137)
    env.feed.serving()
    env.pods.transition(pod, SandboxState.NOTREADY)  # after serving: not part of the backlog
    first = [i.response for i in _drain(env.feed.subscription())]
    assert [e.container_event_type for e in first][-1] == api_pb2.CONTAINER_STOPPED_EVENT
    assert first[-1].containers_statuses[0].exit_code == 137
    assert len(first) == 5  # pod created+started, container created, started, stopped
    time.sleep(0.3)
    assert _drain(env.feed.subscription()) == []


def test_close_ends_every_stream_after_what_it_queued(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.feed.serving()
    sub = env.feed.subscription()
    env.pods.transition(env.pods.insert(_pod()), SandboxState.READY)
    env.feed.close()

    async def read_all() -> int:
        return len([item async for item in sub])

    assert asyncio.run(read_all()) == 2
    assert env.feed.streams == 0
