"""The sandboxes table and the one path every change of a pod sandbox takes.

`transition` checks the state table, writes the new record, and only after the commit makes
it visible and publishes its events; `update` changes fields without a state change (and
publishes nothing); `insert` and `delete` begin and end a record. Nothing else writes
sandbox records, and no caller changes one in place: records are values.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from cri_py.errors import FailedPrecondition, NotFound
from cri_py.events import EventBus, EventKind, LifecycleEvent, Subject
from cri_py.oci import exits
from cri_py.pod.model import SandboxRecord
from cri_py.pod.state import SandboxState, check_transition
from cri_py.store import Database, RecordTable
from cri_py.store.codec import evolve


class SandboxStore:
    def __init__(self, db: Database, events: EventBus) -> None:
        self._table: RecordTable[SandboxRecord] = RecordTable(db, "pods", SandboxRecord.from_dict)
        self._names: dict[str, str] = {r.name_key: r.id for r in self._table.values()}
        self._events = events

    # ---- reading -----------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Changes committed so far (the List cache's key)."""
        return self._table.generation

    def get(self, pod_id: str) -> SandboxRecord:
        """By id or unique prefix; NotFound otherwise."""
        return self._table.resolve(pod_id, "pod sandbox")

    def find(self, pod_id: str) -> SandboxRecord | None:
        try:
            return self._table.resolve(pod_id, "pod sandbox")
        except NotFound:
            return None

    def current(self, pod_id: str) -> SandboxRecord | None:
        """By full id only: the committed record now."""
        return self._table.get(pod_id)

    def values(self) -> Iterable[SandboxRecord]:
        return self._table.values()

    def ids(self) -> set[str]:
        return {p.id for p in self._table.values()}

    def id_for_name(self, name_key: str) -> str | None:
        return self._names.get(name_key)

    @staticmethod
    def is_ready(pod: SandboxRecord) -> bool:
        """READY, and its infra process (if it has one) is still the one it started."""
        if pod.state != SandboxState.READY:
            return False
        return not pod.infra or exits.same_process(pod.infra_pid, pod.infra_start_time)

    def require_ready(self, pod_id: str) -> SandboxRecord:
        pod = self.get(pod_id)
        if not self.is_ready(pod):
            raise FailedPrecondition(f"pod sandbox {pod.id} is not ready")
        return pod

    # ---- changing ----------------------------------------------------------------------

    def insert(self, rec: SandboxRecord) -> SandboxRecord:
        """A new CREATING record: persisted first, so a crash leaves something to unwind."""
        if rec.state != SandboxState.CREATING:
            raise ValueError("a sandbox record begins CREATING")
        self._table.put(rec)
        self._names[rec.name_key] = rec.id
        return rec

    def transition(self, rec: SandboxRecord, state: SandboxState, **changes: Any) -> SandboxRecord:
        """Move the committed record of `rec` to `state` (with `changes`), then publish."""
        current = self._committed(rec)
        kinds = check_transition(current.state, state)
        new = evolve(current, state=state, **changes)
        self._table.put(new)
        self._publish(kinds, new)
        return new

    def update(self, rec: SandboxRecord, **changes: Any) -> SandboxRecord:
        """Change fields of the committed record of `rec`, not its state."""
        if "state" in changes:
            raise ValueError("state changes go through transition()")
        new = evolve(self._committed(rec), **changes)
        self._table.put(new)
        return new

    def delete(self, rec: SandboxRecord) -> None:
        """Forget the sandbox; a record that was visible publishes DELETED."""
        current = self._table.get(rec.id)
        if current is None:
            return
        self._table.delete(rec.id)
        if self._names.get(current.name_key) == current.id:
            del self._names[current.name_key]
        if current.state != SandboxState.CREATING:
            self._publish((EventKind.DELETED,), current)

    def _committed(self, rec: SandboxRecord) -> SandboxRecord:
        current = self._table.get(rec.id)
        if current is None:
            raise NotFound(f"pod sandbox {rec.id} was removed")
        return current

    def _publish(self, kinds: Iterable[EventKind], rec: SandboxRecord) -> None:
        now = time.time_ns()
        for kind in kinds:
            self._events.publish(LifecycleEvent(kind, Subject.SANDBOX, rec.id, rec.id, now, rec))
