"""Daemon shutdown ends every owned task before the store closes; the root is locked first."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from cri_py.config.model import Config
from cri_py.daemon import Daemon, DaemonError, lock_root
from cri_py.store import Database


def test_shutdown_awaits_owned_work_before_closing_the_store(tmp_path: Path) -> None:
    daemon = Daemon(Config(root=tmp_path / "root", run_dir=tmp_path / "run"))
    db = daemon.db = Database(tmp_path / "state.db")
    db.ensure_table("CREATE TABLE IF NOT EXISTS log (line TEXT)")
    seen: list[str] = []

    async def cleanup_on_cancel() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            # what a cancelled operation does on its way out: record what it undid
            await asyncio.sleep(0.01)
            with db.transaction() as tx:
                tx.execute("INSERT INTO log VALUES ('unwound')")
            seen.append("wrote")

    async def scenario() -> None:
        daemon.tasks.spawn(cleanup_on_cancel(), name="create")
        await asyncio.sleep(0.01)
        await daemon.shutdown()

    asyncio.run(scenario())
    assert seen == ["wrote"]
    assert daemon.db is None
    assert Database(tmp_path / "state.db").query("SELECT line FROM log") == [("unwound",)]


def test_a_second_daemon_on_one_root_is_refused_before_it_touches_anything(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    first = lock_root(root)
    try:
        config = Config(root=root, run_dir=tmp_path / "run")
        with pytest.raises(DaemonError, match="is using the root"):
            asyncio.run(Daemon(config).start())
        assert sorted(p.name for p in root.iterdir()) == ["cri-py.lock"]  # no database, no images
    finally:
        os.close(first)
