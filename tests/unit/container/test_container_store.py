"""The one transition path: checked against the table, committed, then published."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from cri_py.api import api_pb2
from cri_py.container.model import ContainerRecord
from cri_py.container.state import ContainerState
from cri_py.container.store import ContainerStore
from cri_py.errors import FailedPrecondition, NotFound
from cri_py.events import EventBus, EventKind, LifecycleEvent, Subject
from cri_py.store import Database
from cri_py.store.codec import encode_message


def _creating(cid: str = "c" * 64) -> ContainerRecord:
    cfg = api_pb2.ContainerConfig(metadata=api_pb2.ContainerMetadata(name="app"))
    return ContainerRecord(
        id=cid, pod_id="p" * 64, name="app", attempt=0, state=ContainerState.CREATING, created_at=1,
        runtime_handler="runc", config_b64=encode_message(cfg), image_id="sha256:i", image_ref="r",
        image_name="busybox", bundle="/b",
    )  # fmt: skip


@pytest.fixture
def env(tmp_path: Path) -> tuple[Database, ContainerStore, list[LifecycleEvent]]:
    db = Database(tmp_path / "state.db")
    bus = EventBus()
    seen: list[LifecycleEvent] = []
    bus.subscribe(seen.append)
    return db, ContainerStore(db, bus), seen


def test_a_lifecycle_publishes_each_committed_change_once(
    env: tuple[Database, ContainerStore, list[LifecycleEvent]],
) -> None:
    db, store, seen = env
    rec = store.insert(_creating())
    assert seen == []  # a creating container is not visible yet
    created = store.transition(rec, ContainerState.CREATED, pid=7, conmon_pid=6)
    running = store.transition(created, ContainerState.RUNNING, started_at=5)
    store.update(running, resources_b64="")  # a field update is no event
    exited = store.transition(running, ContainerState.EXITED, exit_code=3)
    store.delete(exited)
    assert [(e.kind, e.subject, e.id, e.pod_id) for e in seen] == [
        (kind, Subject.CONTAINER, rec.id, rec.pod_id)
        for kind in (EventKind.CREATED, EventKind.STARTED, EventKind.STOPPED, EventKind.DELETED)
    ]
    # each event carries the record as committed with it
    assert seen[1].record.state == ContainerState.RUNNING and seen[2].record.exit_code == 3
    assert store.current(rec.id) is None and not store.name_taken(rec.name_key)


def test_records_are_values_and_transitions_start_from_the_committed_one(
    env: tuple[Database, ContainerStore, list[LifecycleEvent]],
) -> None:
    db, store, seen = env
    stale = store.insert(_creating())
    with pytest.raises(dataclasses.FrozenInstanceError):
        stale.state = ContainerState.RUNNING  # type: ignore[misc]
    store.transition(stale, ContainerState.CREATED, pid=7)
    # a caller holding the old value still moves the committed record, with its fields
    running = store.transition(stale, ContainerState.RUNNING, started_at=5)
    assert running.pid == 7 and running.started_at == 5
    assert stale.state == ContainerState.CREATING


def test_the_table_refuses_a_transition_and_nothing_changes(
    env: tuple[Database, ContainerStore, list[LifecycleEvent]],
) -> None:
    db, store, seen = env
    rec = store.transition(store.insert(_creating()), ContainerState.CREATED)
    exited = store.transition(rec, ContainerState.EXITED)
    generation = store.generation
    with pytest.raises(FailedPrecondition):
        store.transition(exited, ContainerState.RUNNING)
    assert store.current(rec.id) == exited and store.generation == generation
    assert [e.kind for e in seen] == [EventKind.CREATED, EventKind.STOPPED]
    with pytest.raises(ValueError):
        store.update(exited, state=ContainerState.RUNNING)


def test_a_failed_write_publishes_nothing_and_keeps_memory_equal_to_disk(
    env: tuple[Database, ContainerStore, list[LifecycleEvent]],
) -> None:
    db, store, seen = env
    rec = store.transition(store.insert(_creating()), ContainerState.CREATED)
    seen.clear()
    db.query(
        "CREATE TEMP TRIGGER fail BEFORE INSERT ON containers "
        "BEGIN SELECT RAISE(ABORT, 'injected write failure'); END"
    )
    with pytest.raises(sqlite3.IntegrityError, match="injected"):
        store.transition(rec, ContainerState.RUNNING, started_at=9)
    assert seen == []
    assert store.current(rec.id) == rec
    reread = ContainerStore(db, EventBus()).current(rec.id)
    assert reread is not None and reread.state == ContainerState.CREATED and reread.started_at == 0


def test_a_removed_container_cannot_transition(
    env: tuple[Database, ContainerStore, list[LifecycleEvent]],
) -> None:
    db, store, seen = env
    rec = store.insert(_creating())
    store.delete(rec)
    assert seen == []  # it was never visible: no DELETED either
    with pytest.raises(NotFound):
        store.transition(rec, ContainerState.CREATED)
