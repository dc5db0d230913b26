"""A corrupt or locked state.db at start: the daemon says so and exits, and changes nothing;
with the file restored (or the lock released) it starts with everything it had."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from cri_py.api import api_pb2
from tests.e2e.test_pod_support import run_pod


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ready_pods(cri: Any) -> list[str]:
    items = cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
    return [p.id for p in items if p.state == api_pb2.SANDBOX_READY]


def test_corrupt_state_db_is_refused_and_left_alone(cri: Any) -> None:
    pod_id = run_pod(cri)
    cri.stop()
    db = cri.root / "state.db"
    original = db.read_bytes()
    for damage in ("garbage", "pages"):
        if damage == "garbage":
            db.write_bytes(b"not a database, " * 4096)
        else:
            broken = bytearray(original)
            broken[4096:] = b"\x5a" * (len(broken) - 4096)  # every page after the header page
            db.write_bytes(bytes(broken))
        before = digest(db)
        with pytest.raises(RuntimeError) as err:
            cri.start(timeout=30)
        assert "state.db" in str(err.value) and "leaves it as it is" in str(err.value)
        assert digest(db) == before, "the daemon wrote to a state.db it refused"
    db.write_bytes(original)
    # a row no record can be made of (an operator's edit): named, and nothing written
    edit = sqlite3.connect(str(db))
    with edit:
        edit.execute("INSERT INTO containers (id, data) VALUES (?, ?)", ("f" * 64, '{"id": 5'))
    edit.close()
    # the data files (the -shm index is a cache that readers rebuild)
    files = {p.name: digest(p) for p in cri.root.glob("state.db*") if not p.name.endswith("-shm")}
    with pytest.raises(RuntimeError) as err:
        cri.start(timeout=30)
    assert "of table containers cannot be read" in str(err.value)
    assert {p.name: digest(p) for p in cri.root.glob("state.db*") if not p.name.endswith("-shm")} == files
    db.write_bytes(original)
    for leftover in cri.root.glob("state.db-*"):
        leftover.unlink()
    cri.start()
    assert ready_pods(cri) == [pod_id]


def test_locked_state_db_is_refused_until_free(cri: Any) -> None:
    pod_id = run_pod(cri)
    cri.stop()
    db = cri.root / "state.db"
    other = sqlite3.connect(str(db), isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        before = digest(db)
        with pytest.raises(RuntimeError) as err:
            cri.start(timeout=60)
        assert "locked by another process" in str(err.value)
        assert digest(db) == before
    finally:
        other.execute("ROLLBACK")
        other.close()
    cri.start()
    assert ready_pods(cri) == [pod_id]
