"""A persisted table of immutable records with an in-memory index in front of it.

A change is written to SQLite and becomes visible in the index only once its transaction has
committed: a List RPC never shows something that a crash, or a failed write, would lose, and
a failed write leaves memory equal to the disk. Records are values: an update is a new record
put in place of the old one, never the indexed one changed in place.

The table counts committed changes (`generation`); caches of List answers are keyed by it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any, Generic, Protocol, TypeVar

from cri_py.errors import InvalidArgument, NotFound
from cri_py.store.db import Database, DatabaseUnusable, Transaction

_TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class Record(Protocol):
    @property
    def id(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=Record)


class RecordTable(Generic[R]):
    def __init__(self, db: Database, name: str, decode: Callable[[dict[str, Any]], R]) -> None:
        if not _TABLE_NAME.match(name):
            raise ValueError(f"bad table name {name!r}")
        self._db = db
        self._name = name
        self._decode = decode
        db.ensure_table(f"CREATE TABLE IF NOT EXISTS {name} (id TEXT PRIMARY KEY, data TEXT NOT NULL)")
        self._index: dict[str, R] = {}
        self._generation = 0
        self.reload()

    def reload(self) -> None:
        """Read the whole table again (another process wrote to it)."""
        index: dict[str, R] = {}
        for row_id, data in self._db.query(f"SELECT id, data FROM {self._name}"):
            try:
                index[row_id] = self._decode(json.loads(data))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                raise DatabaseUnusable(
                    f"{self._db.path}: row {str(row_id)[:80]!r} of table {self._name} cannot be read "
                    f"({type(exc).__name__}: {exc}); cri-py leaves the file as it is: restore it from a "
                    "backup, or move it away to start with an empty store"
                ) from exc
        self._index = index
        self._generation += 1

    @property
    def generation(self) -> int:
        """Changes to the index so far: equal numbers mean equal contents."""
        return self._generation

    def put(self, record: R, tx: Transaction | None = None) -> None:
        """Write `record`; it replaces the indexed one when the transaction commits."""
        data = json.dumps(record.to_dict(), separators=(",", ":"), sort_keys=True)
        sql = f"INSERT OR REPLACE INTO {self._name} (id, data) VALUES (?, ?)"
        with self._db.transaction() if tx is None else nullcontext(tx) as t:
            t.execute(sql, (record.id, data))
            t.after_commit(lambda: self._swap(record.id, record))

    def delete(self, record_id: str, tx: Transaction | None = None) -> None:
        sql = f"DELETE FROM {self._name} WHERE id = ?"
        with self._db.transaction() if tx is None else nullcontext(tx) as t:
            t.execute(sql, (record_id,))
            t.after_commit(lambda: self._swap(record_id, None))

    def _swap(self, record_id: str, record: R | None) -> None:
        if record is None:
            self._index.pop(record_id, None)
        else:
            self._index[record_id] = record
        self._generation += 1

    def get(self, record_id: str) -> R | None:
        return self._index.get(record_id)

    def values(self) -> Iterable[R]:
        return list(self._index.values())

    def __len__(self) -> int:
        return len(self._index)

    def resolve(self, id_or_prefix: str, what: str) -> R:
        """Find by full id or unique id prefix (crictl accepts truncated ids)."""
        if not id_or_prefix:
            raise InvalidArgument(f"{what} id is required")
        exact = self._index.get(id_or_prefix)
        if exact is not None:
            return exact
        matches = [r for key, r in self._index.items() if key.startswith(id_or_prefix)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise NotFound(f"{what} {id_or_prefix!r} not found")
        raise InvalidArgument(f"{what} id prefix {id_or_prefix!r} is ambiguous")
