"""Received chunks waiting for their reader, with a bound that pauses the connection's reader.

Neither peer does flow control (spdystream ignores SPDY windows), so without a bound a
client could push stdin faster than the process reads it and grow the daemon's memory
without limit. Like spdystream, we stop reading the connection while one channel holds too
much; TCP then pushes back on the client.
"""

from __future__ import annotations

import asyncio
from collections import deque

LIMIT = 4 * 1024 * 1024


class Inbox:
    def __init__(self, limit: int = LIMIT) -> None:
        self._chunks: deque[bytes] = deque()
        self._available = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._limit = limit
        self.buffered = 0
        self.ended = False

    def feed(self, data: bytes) -> None:
        if self.ended or not data:
            return
        self._chunks.append(data)
        self.buffered += len(data)
        self._available.set()
        if self.buffered > self._limit:
            self._drained.clear()

    def end(self) -> None:
        """No more data will come (FIN, reset or connection gone); the reader gets b"" after the rest."""
        self.ended = True
        self._available.set()

    def abandon(self) -> None:
        """The channel was reset: end it, and never hold the connection up for it again
        (what arrived before stays readable, as a Go peer expects)."""
        self._limit = 1 << 62
        self._drained.set()
        self.end()

    async def read(self) -> bytes:
        while not self._chunks:
            if self.ended:
                return b""
            self._available.clear()
            await self._available.wait()
        data = self._chunks.popleft()
        self.buffered -= len(data)
        if self.buffered <= self._limit:
            self._drained.set()
        return data

    @property
    def over_limit(self) -> bool:
        return self.buffered > self._limit

    async def drained(self) -> None:
        await self._drained.wait()
