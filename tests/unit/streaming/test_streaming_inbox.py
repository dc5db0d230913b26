"""The bounded inbox that lets a connection's reader pause while one channel holds too much."""

from __future__ import annotations

import asyncio

from cri_py.streaming.inbox import Inbox


def test_order_end_and_limit() -> None:
    async def main() -> None:
        inbox = Inbox(limit=10)
        inbox.feed(b"12345")
        inbox.feed(b"")
        assert not inbox.over_limit
        inbox.feed(b"6789012")
        assert inbox.over_limit
        drained = asyncio.create_task(inbox.drained())
        await asyncio.sleep(0)
        assert not drained.done()
        assert await inbox.read() == b"12345"
        await asyncio.wait_for(drained, 1)
        inbox.end()
        inbox.feed(b"late")
        assert await inbox.read() == b"6789012"
        assert await inbox.read() == b""
        assert await inbox.read() == b""

    asyncio.run(main())


def test_reader_waits_for_data_and_abandon_releases_the_connection() -> None:
    async def main() -> None:
        inbox = Inbox(limit=1)
        reader = asyncio.create_task(inbox.read())
        await asyncio.sleep(0)
        inbox.feed(b"ab")
        assert await reader == b"ab"
        inbox.feed(b"cd")
        assert inbox.over_limit
        inbox.abandon()
        assert not inbox.over_limit
        await asyncio.wait_for(inbox.drained(), 1)
        assert await inbox.read() == b"cd"
        assert await inbox.read() == b""

    asyncio.run(main())
