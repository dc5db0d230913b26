"""The state store: transactions are atomic, the index follows the database, SIGKILL loses nothing committed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from cri_py.errors import InvalidArgument, NotFound
from cri_py.store import Database, RecordTable


@dataclass
class Item:
    id: str
    value: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Item:
        return cls(**data)


def test_put_get_delete_and_reload(tmp_path: Path) -> None:
    db = Database(tmp_path / "state.db")
    table = RecordTable(db, "items", Item.from_dict)
    table.put(Item("abc123", 1))
    table.put(Item("abd456", 2))
    table.delete("abd456")
    db.close()
    reopened = RecordTable(Database(tmp_path / "state.db"), "items", Item.from_dict)
    assert [i.to_dict() for i in reopened.values()] == [{"id": "abc123", "value": 1}]


def test_failed_transaction_changes_nothing(tmp_path: Path) -> None:
    db = Database(tmp_path / "state.db")
    table = RecordTable(db, "items", Item.from_dict)
    table.put(Item("keep", 1))
    with pytest.raises(RuntimeError), db.transaction() as tx:
        table.delete("keep", tx)
        raise RuntimeError("boom")
    assert RecordTable(db, "items", Item.from_dict).get("keep") == Item("keep", 1)


def test_resolve_by_unique_prefix(tmp_path: Path) -> None:
    table = RecordTable(Database(tmp_path / "state.db"), "items", Item.from_dict)
    table.put(Item("abc123", 1))
    table.put(Item("abd456", 2))
    assert table.resolve("abc", "item").value == 1
    assert table.resolve("abd456", "item").value == 2
    with pytest.raises(InvalidArgument):
        table.resolve("ab", "item")
    with pytest.raises(NotFound):
        table.resolve("zz", "item")
    with pytest.raises(InvalidArgument):
        table.resolve("", "item")


WRITER = """
import sys
from pathlib import Path
from cri_py.store import Database
db = Database(Path(sys.argv[1]))
db.ensure_table("CREATE TABLE IF NOT EXISTS pairs (n INTEGER PRIMARY KEY, side TEXT)")
db.ensure_table("CREATE TABLE IF NOT EXISTS mirror (n INTEGER PRIMARY KEY)")
n = db.query("SELECT COALESCE(MAX(n), 0) FROM pairs")[0][0]
print("ready", flush=True)
while True:
    n += 1
    with db.transaction() as tx:
        tx.execute("INSERT INTO pairs (n, side) VALUES (?, ?)", (n, "x" * 2000))
        tx.execute("INSERT INTO mirror (n) VALUES (?)", (n,))
    if n % 50 == 0:
        print(n, flush=True)
"""


def test_sigkill_at_any_moment_leaves_a_consistent_store(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    rng = random.Random(7)
    last_seen = 0
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        db = Database(path)
        assert db.query("PRAGMA integrity_check") == [("ok",)]
        pairs = {n for (n,) in db.query("SELECT n FROM pairs")}
        mirror = {n for (n,) in db.query("SELECT n FROM mirror")}
        assert pairs == mirror, "a transaction was half applied"
        assert pairs == set(range(1, len(pairs) + 1))
        assert len(pairs) > last_seen, "no progress was kept across the kill"
        last_seen = len(pairs)
        db.close()


def test_records_are_json_rows(tmp_path: Path) -> None:
    db = Database(tmp_path / "state.db")
    RecordTable(db, "items", Item.from_dict).put(Item("x", 5))
    assert json.loads(db.query("SELECT data FROM items")[0][0]) == {"id": "x", "value": 5}
