"""PodService concurrency, with fakes at its seams (network, containers, runtimes).

The pods here are records put into the store directly (no namespaces, no processes): what is
tested is the order in which Stop and Remove take turns and what each leaves behind.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cri_py.api import api_pb2
from cri_py.config.model import Config
from cri_py.errors import DeadlineExceeded
from cri_py.events import EventBus
from cri_py.oci import exits
from cri_py.oci.spec import HostFacts
from cri_py.pod import service as pod_service
from cri_py.pod.model import SandboxRecord
from cri_py.pod.pinner import ForkPinner, IdMapping, PinRequest, ThreadPinner, UserNamespace
from cri_py.pod.service import PodService
from cri_py.pod.state import SandboxState
from cri_py.pod.store import SandboxStore
from cri_py.server.errors import status_code_for
from cri_py.storage.mount import is_mountpoint
from cri_py.store import Database
from cri_py.store.codec import encode_message
from cri_py.tasks import TaskOwner


class FakeNetwork:
    """CNI DEL that waits for `gate`, counting calls and how many ran at once."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls = 0
        self.running = 0
        self.most_at_once = 0

    async def teardown(self, pod_id: str, netns: Path | None) -> None:
        self.calls += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.gate.wait()
        finally:
            self.running -= 1


class FakeContainers:
    async def stop_pod_containers(self, pod_id: str) -> None:
        return None

    async def remove_pod_containers(self, pod_id: str) -> None:
        return None


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.config = Config(root=tmp_path / "root", run_dir=tmp_path / "run")
        self.db = Database(tmp_path / "state.db")
        self.store = SandboxStore(self.db, EventBus())
        self.network = FakeNetwork()
        self.tasks = TaskOwner()
        self.pods = PodService(
            self.config,
            self.store,
            FakeContainers(),
            self.network,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]  # no runtime is asked for: no pod has an infra process
            HostFacts("cgroupfs", 0),
            self.tasks,
            ThreadPinner(),
        )
        self.tmp = tmp_path

    def ready_pod(self, **fields: Any) -> SandboxRecord:
        cfg = api_pb2.PodSandboxConfig(metadata=api_pb2.PodSandboxMetadata(name="n", namespace="ns", uid="u"))
        pod_id = fields.pop("id", "a" * 64)
        fields.setdefault("netns_path", str(self.tmp / "netns-pin"))
        pod = SandboxRecord(
            id=pod_id, name="n", namespace="ns", uid="u", attempt=0, state=SandboxState.CREATING,
            created_at=1, runtime_handler="runc", config_b64=encode_message(cfg),
            pod_dir=str(self.tmp / "pods" / pod_id), cgroup_parent="/p", hostname="n", **fields,
        )  # fmt: skip
        return self.store.transition(self.store.insert(pod), SandboxState.READY, network_ready=True)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield Env(tmp_path)


def test_a_stop_queued_behind_a_remove_does_not_bring_the_pod_back(env: Env) -> None:
    async def scenario() -> None:
        pod = env.ready_pod()
        removing = asyncio.create_task(env.pods.remove(pod.id))
        await asyncio.sleep(0.01)  # Remove holds the pod's lock, in CNI DEL
        stopping = asyncio.create_task(env.pods.stop(pod.id))
        await asyncio.sleep(0.01)  # Stop waits for the lock
        env.network.gate.set()
        await asyncio.gather(removing, stopping)
        assert env.store.current(pod.id) is None
        assert SandboxStore(env.db, EventBus()).current(pod.id) is None, "the removed pod was saved again"
        await env.tasks.close()

    asyncio.run(scenario())


def test_a_retried_stop_joins_the_first_instead_of_a_second_cni_del(env: Env) -> None:
    async def scenario() -> None:
        pod = env.ready_pod()
        first = asyncio.create_task(env.pods.stop(pod.id))
        await asyncio.sleep(0.01)
        first.cancel()  # kubelet's deadline: the client goes, the stop goes on
        await asyncio.sleep(0.01)
        retry = asyncio.create_task(env.pods.stop(pod.id))
        await asyncio.sleep(0.01)
        env.network.gate.set()
        await retry
        assert env.network.calls == 1 and env.network.most_at_once == 1
        assert env.store.get(pod.id).state == SandboxState.NOTREADY
        await env.tasks.close()

    asyncio.run(scenario())


def test_a_stop_out_of_time_is_deadline_exceeded(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pod_service, "CLEANUP_TIMEOUT", 0.05)

    async def scenario() -> None:
        pod = env.ready_pod()
        with pytest.raises(DeadlineExceeded) as caught:
            await env.pods.stop(pod.id)  # CNI DEL never returns
        assert status_code_for(caught.value).name == "DEADLINE_EXCEEDED"
        await env.tasks.close()

    asyncio.run(scenario())


def test_recovery_does_not_take_a_reused_infra_pid_for_the_pause_process(env: Env) -> None:
    stranger = subprocess.Popen(["sleep", "60"])

    async def scenario() -> None:
        try:
            # the pod's pause process had this pid once, and started at another time
            pod = env.ready_pod(
                netns_path="", infra=True, infra_pid=stranger.pid,
                infra_start_time=exits.start_time(stranger.pid) - 100,
            )  # fmt: skip
            await env.pods.recover()
            assert env.store.get(pod.id).state == SandboxState.NOTREADY
            assert not env.store.is_ready(env.store.get(pod.id))
        finally:
            await env.tasks.close()

    try:
        asyncio.run(scenario())
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="user namespaces and their pins need root")
def test_the_user_namespace_probe_leaves_no_pin_and_a_crashed_probes_pin_goes() -> None:
    # a directory others may search, as the probe asks of the daemon's root and run dir
    base = Path(tempfile.mkdtemp(prefix="cripy-unit-"))
    try:
        base.chmod(0o711)
        env = Env(base)
        mapping = (IdMapping(0, pod_service.PROBE_HOST_ID, 65536),)
        stale = env.pods.ns_dir / f"{pod_service.PROBE_PREFIX}0123456789abcdef-user"
        env.pods.ns_dir.mkdir(parents=True)
        ForkPinner().pin(PinRequest(user=stale, user_ns=UserNamespace(mapping, mapping)))
        assert is_mountpoint(stale)
        env.pods._prepare()  # what recovery does first
        assert not stale.exists()
        assert asyncio.run(env.pods.user_namespaces_supported()) is True
        assert list(env.pods.ns_dir.iterdir()) == []
        assert str(base) not in Path("/proc/self/mountinfo").read_text()
    finally:
        ForkPinner().unpin(base.glob("run/nsfs/*"))  # (when the test failed)
        shutil.rmtree(base)
