"""Bytes from the event loop to a worker thread, with back-pressure in both directions.

The download (async) feeds chunks; the unpacker (a thread) reads them as a file. The loop
never blocks: when too much is buffered the producer awaits an event the reader sets. When
the reader gives up (a hostile layer), the producer's next `put` raises instead of waiting.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque


class ReaderGone(Exception):
    """The consuming thread stopped reading."""


class PipeAborted(Exception):
    """The producer stopped before the end of the stream."""


class ChunkPipe:
    def __init__(self, loop: asyncio.AbstractEventLoop, high_water: int = 4 << 20) -> None:
        self._loop = loop
        self._high = high_water
        self._chunks: deque[memoryview] = deque()
        self._buffered = 0
        self._cond = threading.Condition()
        self._eof = False
        self._abort: BaseException | None = None
        self._reader_gone = False
        self._room = asyncio.Event()
        self._room.set()

    # producer side (event loop)

    async def put(self, data: bytes) -> None:
        if not data:
            return
        with self._cond:
            if self._reader_gone:
                raise ReaderGone()
            self._chunks.append(memoryview(data))
            self._buffered += len(data)
            self._cond.notify()
            full = self._buffered > self._high
            if full:
                self._room.clear()
        if full:
            await self._room.wait()
            if self._reader_gone:
                raise ReaderGone()

    def close(self) -> None:
        with self._cond:
            self._eof = True
            self._cond.notify()

    def abort(self, exc: BaseException) -> None:
        with self._cond:
            self._abort = exc
            self._cond.notify()

    # consumer side (worker thread)

    def read(self, size: int = -1) -> bytes:
        with self._cond:
            while not self._chunks and not self._eof and self._abort is None:
                self._cond.wait()
            if self._abort is not None:
                raise PipeAborted(str(self._abort) or type(self._abort).__name__)
            if not self._chunks:
                return b""
            if size < 0:
                out = b"".join(bytes(c) for c in self._chunks)
                self._chunks.clear()
            else:
                # as much as is buffered, up to size: fewer and bigger reads downstream (each
                # one hashes, writes and may wait for the GIL)
                parts: list[memoryview] = []
                want = size
                while self._chunks and want > 0:
                    head = self._chunks[0]
                    if len(head) <= want:
                        parts.append(self._chunks.popleft())
                    else:
                        parts.append(head[:want])
                        self._chunks[0] = head[want:]
                    want -= len(parts[-1])
                out = b"".join(parts)
            self._buffered -= len(out)
            # the producer clears the event under this lock, so this read is reliable
            if self._buffered <= self._high and not self._room.is_set():
                self._loop.call_soon_threadsafe(self._room.set)
            return out

    def reader_done(self) -> None:
        """Called by the consumer when it stops, for whatever reason."""
        with self._cond:
            self._reader_gone = True
            self._chunks.clear()
            self._buffered = 0
        try:
            self._loop.call_soon_threadsafe(self._room.set)
        except RuntimeError:
            pass  # loop closed
