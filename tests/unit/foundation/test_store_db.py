"""The state store: transactions are atomic, the index follows the database, SIGKILL loses nothing committed."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
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


def _inject_write_failure(db: Database, table: str, record_id: str) -> None:
    """A real SQLite error on writing one row (a trigger that aborts the statement)."""
    db.query(
        f"CREATE TEMP TRIGGER fail_{record_id} BEFORE INSERT ON {table} WHEN NEW.id = '{record_id}' "
        "BEGIN SELECT RAISE(ABORT, 'injected write failure'); END"
    )


def _on_disk(db: Database) -> dict[str, Item]:
    return {i.id: i for i in RecordTable(db, "items", Item.from_dict).values()}


def test_a_change_is_visible_only_after_its_transaction_commits(tmp_path: Path) -> None:
    db = Database(tmp_path / "state.db")
    table = RecordTable(db, "items", Item.from_dict)
    table.put(Item("a", 1))
    before = table.generation
    with db.transaction() as tx:
        table.put(Item("a", 2), tx)
        table.put(Item("b", 1), tx)
        assert table.get("a") == Item("a", 1) and table.get("b") is None
        assert table.generation == before
    assert table.get("a") == Item("a", 2) and table.get("b") == Item("b", 1)
    assert table.generation > before


def test_a_failed_write_leaves_memory_equal_to_disk(tmp_path: Path) -> None:
    db = Database(tmp_path / "state.db")
    table = RecordTable(db, "items", Item.from_dict)
    table.put(Item("a", 1))
    table.put(Item("b", 1))
    generation = table.generation
    _inject_write_failure(db, "items", "b")
    # two writes in one transaction, the second fails: neither may show
    with pytest.raises(sqlite3.IntegrityError, match="injected"), db.transaction() as tx:
        table.put(Item("a", 2), tx)
        table.put(Item("b", 2), tx)
    assert {i.id: i for i in table.values()} == _on_disk(db) == {"a": Item("a", 1), "b": Item("b", 1)}
    # one write alone
    with pytest.raises(sqlite3.IntegrityError):
        table.put(Item("b", 3))
    assert {i.id: i for i in table.values()} == _on_disk(db)
    assert table.generation == generation
    # and the table keeps working
    table.put(Item("a", 4))
    assert _on_disk(db)["a"] == table.get("a") == Item("a", 4)
