"""The loop-to-thread byte pipe: order, back-pressure, and both ways of stopping early."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cri_py.image.pipe import ChunkPipe, PipeAborted, ReaderGone


def test_bytes_arrive_in_order_with_back_pressure() -> None:
    async def run() -> bytes:
        pipe = ChunkPipe(asyncio.get_running_loop(), high_water=1000)
        got: list[bytes] = []

        def reader() -> None:
            while chunk := pipe.read(300):
                got.append(chunk)
            pipe.reader_done()

        thread = threading.Thread(target=reader)
        thread.start()
        for i in range(200):
            await pipe.put(bytes([i % 256]) * 97)
            assert pipe._buffered <= 1000 + 97  # the producer waited for room
        pipe.close()
        await asyncio.to_thread(thread.join)
        return b"".join(got)

    data = asyncio.run(run())
    assert data == b"".join(bytes([i % 256]) * 97 for i in range(200))


def test_reader_gone_stops_the_producer() -> None:
    async def run() -> None:
        pipe = ChunkPipe(asyncio.get_running_loop(), high_water=100)
        pipe.reader_done()
        with pytest.raises(ReaderGone):
            await pipe.put(b"x")

    asyncio.run(run())


def test_abort_reaches_the_reader() -> None:
    async def run() -> None:
        pipe = ChunkPipe(asyncio.get_running_loop())
        await pipe.put(b"partial")
        pipe.abort(ConnectionError("registry went away"))
        with pytest.raises(PipeAborted, match="registry went away"):
            await asyncio.to_thread(pipe.read, 100)

    asyncio.run(run())


def test_a_read_takes_every_buffered_chunk_up_to_its_size() -> None:
    async def run() -> list[bytes]:
        pipe = ChunkPipe(asyncio.get_running_loop())
        for i in range(5):
            await pipe.put(bytes([i]) * 100)
        pipe.close()
        return [pipe.read(250), pipe.read(1000), pipe.read(10)]

    first, second, end = asyncio.run(run())
    assert first == b"\x00" * 100 + b"\x01" * 100 + b"\x02" * 50
    assert second == b"\x02" * 50 + b"\x03" * 100 + b"\x04" * 100
    assert end == b""
