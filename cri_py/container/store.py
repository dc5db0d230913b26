"""The containers table and the one path every change of a container takes.

`transition` checks the state table, writes the new record, and only after the commit makes
it visible and publishes its events; `update` changes fields without a state change (and
publishes nothing); `insert` and `delete` begin and end a record. Nothing else writes
container records, and no caller changes one in place: records are values.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from cri_py.container.model import ContainerRecord
from cri_py.container.state import ContainerState, check_transition
from cri_py.errors import NotFound
from cri_py.events import EventBus, EventKind, LifecycleEvent, Subject
from cri_py.store import Database, RecordTable
from cri_py.store.codec import evolve


class ContainerStore:
    def __init__(self, db: Database, events: EventBus) -> None:
        self._table: RecordTable[ContainerRecord] = RecordTable(db, "containers", ContainerRecord.from_dict)
        self._names: dict[str, str] = {r.name_key: r.id for r in self._table.values()}
        self._events = events

    # ---- reading -----------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Changes committed so far (the List cache's key)."""
        return self._table.generation

    def get(self, cid: str) -> ContainerRecord:
        """By id or unique prefix; NotFound otherwise."""
        return self._table.resolve(cid, "container")

    def find(self, cid: str) -> ContainerRecord | None:
        try:
            return self._table.resolve(cid, "container")
        except NotFound:
            return None

    def current(self, cid: str) -> ContainerRecord | None:
        """By full id only: the committed record now."""
        return self._table.get(cid)

    def values(self) -> Iterable[ContainerRecord]:
        return self._table.values()

    def in_pod(self, pod_id: str) -> list[ContainerRecord]:
        return [r for r in self._table.values() if r.pod_id == pod_id]

    def image_in_use(self, image_id: str) -> bool:
        """As the container's image or as one of its image volumes."""
        return any(r.image_id == image_id or image_id in r.image_volumes for r in self._table.values())

    def name_taken(self, name_key: str) -> bool:
        return name_key in self._names

    # ---- changing ----------------------------------------------------------------------

    def insert(self, rec: ContainerRecord) -> ContainerRecord:
        """A new CREATING record: persisted first, so a crash leaves something to unwind."""
        if rec.state != ContainerState.CREATING:
            raise ValueError("a container record begins CREATING")
        self._table.put(rec)
        self._names[rec.name_key] = rec.id
        return rec

    def transition(self, rec: ContainerRecord, state: ContainerState, **changes: Any) -> ContainerRecord:
        """Move the committed record of `rec` to `state` (with `changes`), then publish."""
        current = self._committed(rec)
        kinds = check_transition(current.state, state)
        new = evolve(current, state=state, **changes)
        self._table.put(new)
        self._publish(kinds, new)
        return new

    def update(self, rec: ContainerRecord, **changes: Any) -> ContainerRecord:
        """Change fields of the committed record of `rec`, not its state."""
        if "state" in changes:
            raise ValueError("state changes go through transition()")
        new = evolve(self._committed(rec), **changes)
        self._table.put(new)
        return new

    def delete(self, rec: ContainerRecord) -> None:
        """Forget the container; a record that was visible publishes DELETED."""
        current = self._table.get(rec.id)
        if current is None:
            return
        self._table.delete(rec.id)
        if self._names.get(current.name_key) == current.id:
            del self._names[current.name_key]
        if current.state != ContainerState.CREATING:
            self._publish((EventKind.DELETED,), current)

    def _committed(self, rec: ContainerRecord) -> ContainerRecord:
        current = self._table.get(rec.id)
        if current is None:
            raise NotFound(f"container {rec.id} was removed")
        return current

    def _publish(self, kinds: Iterable[EventKind], rec: ContainerRecord) -> None:
        now = time.time_ns()
        for kind in kinds:
            self._events.publish(LifecycleEvent(kind, Subject.CONTAINER, rec.id, rec.pod_id, now, rec))
