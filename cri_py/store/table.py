"""A persisted table of records with an in-memory index in front of it.

Every change is written to SQLite first and only then applied to the index, so a List RPC
never shows something that a crash would lose.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

from cri_py.errors import InvalidArgument, NotFound
from cri_py.store.db import Database

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
        for row_id, data in db.query(f"SELECT id, data FROM {name}"):
            self._index[row_id] = decode(json.loads(data))

    def put(self, record: R, conn: sqlite3.Connection | None = None) -> None:
        data = json.dumps(record.to_dict(), separators=(",", ":"), sort_keys=True)
        sql = f"INSERT OR REPLACE INTO {self._name} (id, data) VALUES (?, ?)"
        if conn is not None:
            conn.execute(sql, (record.id, data))
        else:
            with self._db.transaction() as tx:
                tx.execute(sql, (record.id, data))
        self._index[record.id] = record

    def delete(self, record_id: str, conn: sqlite3.Connection | None = None) -> None:
        sql = f"DELETE FROM {self._name} WHERE id = ?"
        if conn is not None:
            conn.execute(sql, (record_id,))
        else:
            with self._db.transaction() as tx:
                tx.execute(sql, (record_id,))
        self._index.pop(record_id, None)

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
