"""The daemon's embedded database: SQLite in WAL mode, written in transactions.

A transaction is a `Transaction`: writes go through it, and `after_commit` queues what must
happen only once the writes are durable (the record tables swap their in-memory index there),
so a rolled-back transaction leaves memory exactly as it left the disk.

WAL with synchronous=NORMAL keeps every committed transaction atomic and consistent across a
SIGKILL of the daemon (the WAL is replayed on open); only a power loss may drop the last few
commits, never corrupt the file. Writes are small (one JSON row per object), so they run on
the caller's thread; a lock makes the one connection safe for worker threads too.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class Transaction:
    """The writes of one atomic unit, and what to do once they are committed."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._after_commit: list[Callable[[], None]] = []

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, params)

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run `action` after COMMIT (in order); dropped on ROLLBACK."""
        self._after_commit.append(action)


class DatabaseUnusable(Exception):
    """The database file cannot be used as it is: damaged, not a database, or locked by
    another process. Nothing was written to it."""


# how long opening waits for another process's write lock before it says so
OPEN_LOCK_WAIT_S = 5.0
# how long a write waits for the lock once the daemon runs (only its own threads write)
BUSY_TIMEOUT_S = 30.0


class Database:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=OPEN_LOCK_WAIT_S
        )
        try:
            self._check_usable()
            self._conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise DatabaseUnusable(_explain(path, exc)) from exc
        except DatabaseUnusable:
            self._conn.close()
            raise
        self._conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._tx: Transaction | None = None

    def _check_usable(self) -> None:
        """Reads only: a damaged or foreign file is reported before anything is written to it,
        and a file another process is writing is not touched."""
        problems = [str(row[0]) for row in self._conn.execute("PRAGMA quick_check(5)").fetchall()]
        if problems != ["ok"]:
            raise DatabaseUnusable(
                f"{self.path} is damaged ({'; '.join(problems)}); cri-py leaves it as it is: "
                "restore it from a backup, or move it away to start with an empty store"
            )
        # the write lock, taken and given back at once: nobody else may hold it
        self._conn.execute("BEGIN IMMEDIATE")
        self._conn.execute("ROLLBACK")

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One atomic unit of writes; nested use joins the outer transaction."""
        with self._lock:
            if self._tx is not None:
                yield self._tx
                return
            self._conn.execute("BEGIN IMMEDIATE")
            tx = self._tx = Transaction(self._conn)
            try:
                yield tx
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            finally:
                self._tx = None
            for action in tx._after_commit:
                action()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    def ensure_table(self, ddl: str) -> None:
        """Run a `CREATE TABLE IF NOT EXISTS ...` (or index) statement."""
        with self.transaction() as conn:
            conn.execute(ddl)

    def close(self, checkpoint: bool = True) -> None:
        """Close; `checkpoint=False` leaves the file exactly as it was (a store refused at start)."""
        with self._lock:
            try:
                if checkpoint:
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._conn.close()


def _explain(path: Path, exc: sqlite3.DatabaseError) -> str:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return (
            f"{path} is locked by another process ({text}, waited {OPEN_LOCK_WAIT_S:g} s); "
            "cri-py changes nothing until it is free"
        )
    return (
        f"{path} cannot be used ({text}); cri-py leaves it as it is: "
        "restore it from a backup, or move it away to start with an empty store"
    )
