"""Sandbox transitions publish what containerd publishes; readiness checks the infra process."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cri_py.api import api_pb2
from cri_py.errors import FailedPrecondition
from cri_py.events import EventBus, EventKind, LifecycleEvent, Subject
from cri_py.oci import exits
from cri_py.pod.model import SandboxRecord
from cri_py.pod.state import SandboxState
from cri_py.pod.store import SandboxStore
from cri_py.store import Database
from cri_py.store.codec import encode_message


def _creating(pod_id: str = "p" * 64, **fields: object) -> SandboxRecord:
    cfg = api_pb2.PodSandboxConfig(metadata=api_pb2.PodSandboxMetadata(name="n", namespace="ns", uid="u"))
    return SandboxRecord(
        id=pod_id, name="n", namespace="ns", uid="u", attempt=0, state=SandboxState.CREATING, created_at=1,
        runtime_handler="runc", config_b64=encode_message(cfg), pod_dir="/x", cgroup_parent="/p",
        hostname="n", **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def test_sandbox_lifecycle_events(tmp_path: Path) -> None:
    bus = EventBus()
    seen: list[LifecycleEvent] = []
    bus.subscribe(seen.append)
    store = SandboxStore(Database(tmp_path / "state.db"), bus)
    pod = store.insert(_creating())
    ready = store.transition(pod, SandboxState.READY, ip="10.0.0.2")
    stopped = store.transition(ready, SandboxState.NOTREADY)
    store.transition(stopped, SandboxState.NOTREADY)  # a second stop announces nothing
    with pytest.raises(FailedPrecondition):
        store.transition(stopped, SandboxState.READY)
    store.delete(stopped)
    assert [(e.kind, e.subject, e.id, e.pod_id) for e in seen] == [
        (kind, Subject.SANDBOX, pod.id, pod.id)
        for kind in (EventKind.CREATED, EventKind.STARTED, EventKind.STOPPED, EventKind.DELETED)
    ]
    assert seen[0].record.ip == "10.0.0.2"  # type: ignore[union-attr]


def test_readiness_knows_a_reused_infra_pid(tmp_path: Path) -> None:
    store = SandboxStore(Database(tmp_path / "state.db"), EventBus())
    other = subprocess.Popen(["sleep", "60"])
    try:
        started = exits.start_time(other.pid)
        ours = store.insert(_creating(infra=True, infra_pid=other.pid, infra_start_time=started))
        ours = store.transition(ours, SandboxState.READY)
        assert store.is_ready(ours)
        # the same pid recorded with another start time: a different process now has it
        reused = store.insert(
            _creating("q" * 64, infra=True, infra_pid=other.pid, infra_start_time=started - 1)
        )
        assert not store.is_ready(store.transition(reused, SandboxState.READY))
    finally:
        other.kill()
        other.wait()
    assert not store.is_ready(ours)
