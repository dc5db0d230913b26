"""A state.db that cannot be used as it is: refused with a clear reason, and left untouched."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from cri_py.store import Database, DatabaseUnusable, RecordTable
from cri_py.store.db import OPEN_LOCK_WAIT_S


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_store(path: Path, rows: int = 200) -> None:
    db = Database(path)
    db.ensure_table("CREATE TABLE IF NOT EXISTS pods (id TEXT PRIMARY KEY, data TEXT NOT NULL)")
    with db.transaction() as tx:
        for i in range(rows):
            tx.execute("INSERT INTO pods VALUES (?, ?)", (f"{i:064x}", "x" * 300))
    db.close()


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(bytes(range(256)) * 40)
    before = digest(path)
    with pytest.raises(
        DatabaseUnusable, match="state.db cannot be used .*not a database.*leaves it as it is"
    ):
        Database(path)
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db"]


def test_damaged_pages(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    make_store(path)
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096
    data[3 * 4096 : 6 * 4096] = b"\xa5" * (3 * 4096)  # b-tree pages of the table, overwritten
    path.write_bytes(bytes(data))
    before = digest(path)
    with pytest.raises(DatabaseUnusable, match="damaged|malformed"):
        Database(path)
    assert digest(path) == before


def test_locked_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    make_store(path, rows=3)
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    other.execute("INSERT INTO pods VALUES ('theirs', 'pending')")
    before = digest(path)
    started = time.monotonic()
    try:
        with pytest.raises(DatabaseUnusable, match="locked by another process"):
            Database(path)
        assert time.monotonic() - started < OPEN_LOCK_WAIT_S + 5
        assert digest(path) == before
    finally:
        other.execute("ROLLBACK")
        other.close()
    # once it is free the store opens, with what it had
    db = Database(path)
    try:
        assert db.query("SELECT count(*) FROM pods") == [(3,)]
    finally:
        db.close()


def test_a_lock_given_back_while_waiting_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    make_store(path, rows=1)
    other = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")
    threading.Timer(0.5, lambda: other.execute("ROLLBACK")).start()
    db = Database(path)
    try:
        assert db.query("SELECT count(*) FROM pods") == [(1,)]
    finally:
        db.close()
        other.close()


def test_an_unreadable_row_is_named(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = Database(path)
    RecordTable(db, "pods", lambda d: d)  # type: ignore[arg-type,return-value]
    with db.transaction() as tx:
        tx.execute("INSERT INTO pods VALUES (?, ?)", ("a" * 64, "{not json"))
    db.close()
    again = Database(path)
    try:
        with pytest.raises(DatabaseUnusable, match="row 'a{64}' of table pods cannot be read"):
            RecordTable(again, "pods", lambda d: d)  # type: ignore[arg-type,return-value]
    finally:
        again.close(checkpoint=False)
