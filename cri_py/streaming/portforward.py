"""Port-forward sessions: each client connection becomes a TCP connection inside the pod.

SPDY: the client opens an (error, data) stream pair per connection, tied by `requestid`.
WebSocket: ports come from the URL query; channel 2i carries data and 2i+1 errors for the
i-th port, each starting with the port number as two little-endian bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from cri_py.errors import CriError
from cri_py.streaming.backend import PortForwardTarget, StreamingBackend
from cri_py.streaming.spdy import RstStatus
from cri_py.streaming.spdy_session import SpdyStream
from cri_py.streaming.websocket import WsConnection, WsInChannel

log = logging.getLogger(__name__)

PAIR_TIMEOUT = 30.0


def parse_port(value: str | None) -> int | None:
    if value is None or not value.isdigit():
        return None
    port = int(value)
    return port if 0 < port < 65536 else None


async def _relay(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data_in: WsInChannel | SpdyStream
) -> None:
    """Client -> pod until the client ends its side; then half-close towards the pod."""
    while chunk := await data_in.read():
        writer.write(chunk)
        await writer.drain()
    if writer.can_write_eof():
        with contextlib.suppress(OSError):
            writer.write_eof()


@dataclass
class _Pair:
    error: SpdyStream | None = None
    data: SpdyStream | None = None
    timer: asyncio.TimerHandle | None = None


class SpdyPortForward:
    """Pairs streams on one SPDY connection and forwards each pair. Owns its tasks."""

    def __init__(self, backend: StreamingBackend, target: PortForwardTarget) -> None:
        self._backend = backend
        self._target = target
        self._pairs: dict[str, _Pair] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def on_stream(self, stream: SpdyStream) -> None:
        kind = stream.header("streamtype")
        port = parse_port(stream.header("port"))
        if kind not in ("error", "data") or port is None:
            log.info("port-forward: refusing stream %d (%s)", stream.id, dict(stream.headers))
            stream.reset(RstStatus.PROTOCOL_ERROR)
            return
        request_id = stream.header("requestid")
        if request_id is None:
            request_id = str(stream.id if kind == "error" else stream.id - 2)
        pair = self._pairs.setdefault(request_id, _Pair())
        if kind == "error":
            pair.error = stream
        else:
            pair.data = stream
        if pair.error is not None and pair.data is not None:
            del self._pairs[request_id]
            if pair.timer is not None:
                pair.timer.cancel()
            self._spawn(self._forward(pair.error, pair.data, port))
        elif pair.timer is None:
            pair.timer = asyncio.get_running_loop().call_later(PAIR_TIMEOUT, self._pair_timed_out, request_id)

    def _pair_timed_out(self, request_id: str) -> None:
        pair = self._pairs.pop(request_id, None)
        if pair is None:
            return
        if pair.error is not None:
            error = pair.error

            async def report() -> None:
                with contextlib.suppress(ConnectionError):
                    await error.write(
                        f"timed out waiting for the data stream of request {request_id}".encode()
                    )
                error.reset()

            self._spawn(report())
        if pair.data is not None:
            pair.data.reset()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, error: SpdyStream, data: SpdyStream, port: int) -> None:
        try:
            reader, writer = await self._backend.connect(self._target, port)
        except (CriError, OSError) as e:
            with contextlib.suppress(ConnectionError):
                await error.write(str(e).encode())
            error.reset()
            data.reset()
            return
        inbound = asyncio.create_task(_relay(reader, writer, data))
        try:
            while chunk := await reader.read(65536):
                await data.write(chunk)
            await data.close()
            await error.close()
        except (ConnectionError, OSError) as e:
            log.debug("port-forward to %d ended: %s", port, e)
            data.reset()
            error.reset()
        finally:
            inbound.cancel()
            await asyncio.gather(inbound, return_exceptions=True)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        for pair in self._pairs.values():
            if pair.timer is not None:
                pair.timer.cancel()
        self._pairs.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def serve_websocket(
    conn: WsConnection, backend: StreamingBackend, target: PortForwardTarget, ports: list[int]
) -> None:
    """Forward one connection per port over `conn`, until every one of them ended."""
    inputs = {2 * i: WsInChannel() for i in range(len(ports))}
    conn.inboxes.extend(inputs.values())

    def on_message(channel: int, data: bytes) -> None:
        if channel in inputs:
            inputs[channel].feed(data)

    conn.on_message = on_message

    async def forward(index: int, port: int) -> None:
        data_ch, error_ch = 2 * index, 2 * index + 1
        prefix = struct.pack("<H", port)
        await conn.send(data_ch, prefix)
        await conn.send(error_ch, prefix)
        try:
            reader, writer = await backend.connect(target, port)
        except (CriError, OSError) as e:
            await conn.send(error_ch, str(e).encode())
            return
        inbound = asyncio.create_task(_relay(reader, writer, inputs[data_ch]))
        try:
            while chunk := await reader.read(65536):
                await conn.send(data_ch, chunk)
        finally:
            inbound.cancel()
            await asyncio.gather(inbound, return_exceptions=True)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    await asyncio.gather(*(forward(i, p) for i, p in enumerate(ports)))
