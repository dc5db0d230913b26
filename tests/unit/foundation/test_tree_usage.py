"""TreeUsage: a kept walk, walked again at once when the top changes, in the background when old."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from cri_py import fsusage
from cri_py.fsusage import TreeUsage, directory_usage


def test_top_changes_walk_again_at_once_deep_writes_after_max_age(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    usage = TreeUsage(tmp_path, depth=1, max_age=0.3)
    monkeypatch.setattr(fsusage, "REFRESH_DELAY", 0.0)  # no answer has to go out first here

    async def scenario() -> None:
        first = await usage.measure()
        assert (first.used, first.inodes) == directory_usage(tmp_path)

        (tmp_path / "new").write_bytes(os.urandom(64 * 1024))  # the top changed
        second = await usage.measure()
        assert second.inodes == first.inodes + 1 and second.used > first.used

        (deep / "file").write_bytes(os.urandom(64 * 1024))  # below the signature's depth
        assert (await usage.measure()) is second  # kept: nothing near the top moved
        await asyncio.sleep(0.35)
        stale = await usage.measure()  # old: served, and a walk starts behind it
        assert stale is second
        for _ in range(100):
            await asyncio.sleep(0.01)
            fresh = await usage.measure()
            if fresh is not second:
                break
        assert fresh.inodes == second.inodes + 1
        assert fresh.at_ns > second.at_ns

    asyncio.run(scenario())
