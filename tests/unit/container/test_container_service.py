"""ContainerService with a fake runtime: what Stop does when the exit never comes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from cri_py.api import api_pb2
from cri_py.config.model import Config
from cri_py.container import service as container_service
from cri_py.container.model import ContainerRecord
from cri_py.container.service import ContainerService
from cri_py.container.state import ContainerState
from cri_py.container.store import ContainerStore
from cri_py.container.watch import ExitWatcher
from cri_py.errors import DeadlineExceeded
from cri_py.events import EventBus
from cri_py.oci.conmon import is_conmon
from cri_py.oci.exits import ExitInfo
from cri_py.oci.spec import HostFacts
from cri_py.pod.store import SandboxStore
from cri_py.store import Database
from cri_py.store.codec import encode_message
from cri_py.tasks import TaskOwner


class DeafRuntime:
    """A runtime whose container ignores every signal."""

    def __init__(self, exits_dir: Path) -> None:
        self.kills: list[int] = []
        self.exits_dir = exits_dir

    async def kill(self, cid: str, signal: int, *, all_processes: bool = False) -> None:
        self.kills.append(signal)

    def exit_status(self, cid: str, persist_dir: Path) -> None:
        return None  # nothing recorded: the monitor never reports

    def monitor_alive(self, cid: str, monitor_pid: int) -> bool:
        return is_conmon(monitor_pid, cid)


class OneRuntime:
    def __init__(self, runtime: DeafRuntime) -> None:
        self.runtime = runtime

    def get(self, name: str) -> DeafRuntime:
        return self.runtime


def test_stop_gives_up_with_deadline_exceeded_when_no_exit_comes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(container_service, "KILL_DEADLINE", 0.3)
    monkeypatch.setattr(container_service, "KILL_RETRY", 0.05)
    cid = "c" * 64
    # a monitor that stays alive (it looks like this container's conmon) and never reports an exit
    monitor = subprocess.Popen(
        ["/usr/bin/conmon", "-c", "import time; time.sleep(60)", cid], executable=sys.executable
    )
    db = Database(tmp_path / "state.db")
    bus = EventBus()
    store = ContainerStore(db, bus)
    runtime = DeafRuntime(tmp_path)
    tasks = TaskOwner()
    containers = ContainerService(
        Config(root=tmp_path / "root", run_dir=tmp_path / "run"),
        store,
        SandboxStore(db, bus),
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        OneRuntime(runtime),  # type: ignore[arg-type]
        HostFacts("cgroupfs", 0),
        tasks,
    )
    rec = ContainerRecord(
        id=cid, pod_id="p" * 64, name="n", attempt=0, state=ContainerState.CREATING, created_at=1,
        runtime_handler="runc", config_b64=encode_message(api_pb2.ContainerConfig()), image_id="i",
        image_ref="i", image_name="i", bundle=str(tmp_path / "b"), conmon_pid=monitor.pid,
    )  # fmt: skip
    store.transition(store.insert(rec), ContainerState.CREATED)

    async def scenario() -> None:
        try:
            with pytest.raises(DeadlineExceeded, match="did not exit"):
                await asyncio.wait_for(containers.stop(cid, 0), 10)
        finally:
            await tasks.close()

    try:
        asyncio.run(scenario())
    finally:
        monitor.kill()
        monitor.wait()
    assert runtime.kills and set(runtime.kills) == {9}
    assert store.get(cid).state == ContainerState.CREATED  # nothing was made up


class InstantExit:
    """A container that exited within a tick of its start: the exit file's ctime (coarse
    clock) reads earlier than the start time taken with the fine one."""

    def __init__(self, finished_at_ns: int) -> None:
        self.finished_at_ns = finished_at_ns

    def get(self, name: str) -> InstantExit:
        return self

    def exit_status(self, cid: str, persist_dir: Path) -> ExitInfo:
        return ExitInfo(7, self.finished_at_ns, False)

    async def delete(self, cid: str, *, force: bool = False) -> None:
        return None


def test_an_exit_is_never_recorded_before_the_start(tmp_path: Path) -> None:
    db = Database(tmp_path / "state.db")
    store = ContainerStore(db, EventBus())
    started = 1_796_294_429_878_513_984
    rec = ContainerRecord(
        id="c" * 64, pod_id="p" * 64, name="bad", attempt=0, state=ContainerState.CREATING, created_at=1,
        runtime_handler="runc", config_b64=encode_message(api_pb2.ContainerConfig()), image_id="i",
        image_ref="i", image_name="i", bundle=str(tmp_path / "b"),
    )  # fmt: skip
    created = store.transition(store.insert(rec), ContainerState.CREATED)
    store.transition(created, ContainerState.RUNNING, started_at=started)
    tasks = TaskOwner()
    watcher = ExitWatcher(store, InstantExit(started - 900_955), tasks, tmp_path)  # type: ignore[arg-type]

    async def scenario() -> None:
        await watcher.record_exit(rec.id)
        await tasks.close()

    asyncio.run(scenario())
    exited = store.get(rec.id)
    assert exited.state == ContainerState.EXITED and exited.exit_code == 7
    assert exited.finished_at >= exited.started_at == started
