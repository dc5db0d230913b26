"""A ttrpc client: the small RPC protocol containerd's shims speak over a unix socket.

Each call is a stream of its own (odd ids, counting up from 1): one request message, one
response message, each a 10-byte header (payload length, stream id, both big-endian uint32;
message type, 1 = request and 2 = response; flags) before a protobuf envelope
(`TtrpcRequest`: service, method, payload; `TtrpcResponse`: a google.rpc.Status and payload).
Calls run concurrently on one connection; a lost connection fails every call in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import TypeVar

from google.protobuf.message import Message

from cri_py.api import shimv2_pb2 as pb

_HEADER = struct.Struct(">IIBB")
_REQUEST = 1
_RESPONSE = 2
# what ttrpc accepts in one message
MESSAGE_MAX = 4 << 20

M = TypeVar("M", bound=Message)


class TtrpcError(Exception):
    """The server answered with a status other than OK (gRPC codes)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"ttrpc status {code}: {message}")
        self.code = code
        self.message = message


class ConnectionLost(Exception):
    """The connection closed (or never opened) before the answer came."""


NOT_FOUND = 5


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._next_stream = 1
        self._pending: dict[int, asyncio.Future[pb.TtrpcResponse]] = {}
        self._write_lock = asyncio.Lock()
        self._receiver = asyncio.ensure_future(self._receive())

    @classmethod
    async def connect(cls, path: str, time_limit: float = 10.0) -> Client:
        try:
            async with asyncio.timeout(time_limit):
                reader, writer = await asyncio.open_unix_connection(path, limit=MESSAGE_MAX + 64)
        except (OSError, TimeoutError) as exc:
            raise ConnectionLost(f"cannot connect to {path}: {exc}") from exc
        return cls(reader, writer)

    @property
    def closed(self) -> bool:
        return self._receiver.done()

    async def call(
        self, service: str, method: str, request: Message, response: M, time_limit: float | None = None
    ) -> M:
        """Call `service.method`; returns `response` filled in, or raises TtrpcError."""
        if self.closed:
            raise ConnectionLost("the connection is closed")
        stream = self._next_stream
        self._next_stream += 2
        envelope = pb.TtrpcRequest(service=service, method=method, payload=request.SerializeToString())
        if time_limit is not None:
            envelope.timeout_nano = int(time_limit * 1e9)
        data = envelope.SerializeToString()
        if len(data) > MESSAGE_MAX:
            raise ValueError(f"ttrpc request of {len(data)} bytes is over the limit")
        future: asyncio.Future[pb.TtrpcResponse] = asyncio.get_running_loop().create_future()
        self._pending[stream] = future
        try:
            async with self._write_lock:
                self._writer.write(_HEADER.pack(len(data), stream, _REQUEST, 0) + data)
                await self._writer.drain()
            answer = await (asyncio.wait_for(future, time_limit) if time_limit is not None else future)
        except (OSError, ConnectionError) as exc:
            raise ConnectionLost(str(exc)) from exc
        finally:
            self._pending.pop(stream, None)
        if answer.status.code != 0:
            raise TtrpcError(answer.status.code, answer.status.message)
        response.ParseFromString(answer.payload)
        return response

    async def _receive(self) -> None:
        try:
            while True:
                header = await self._reader.readexactly(_HEADER.size)
                length, stream, kind, _flags = _HEADER.unpack(header)
                if length > MESSAGE_MAX:
                    raise ConnectionLost(f"ttrpc message of {length} bytes is over the limit")
                body = await self._reader.readexactly(length)
                future = self._pending.get(stream)
                if kind != _RESPONSE or future is None or future.done():
                    continue
                answer = pb.TtrpcResponse()
                answer.ParseFromString(body)
                future.set_result(answer)
        except (asyncio.IncompleteReadError, OSError, ConnectionLost) as exc:
            lost = (
                exc if isinstance(exc, ConnectionLost) else ConnectionLost("the shim closed the connection")
            )
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(lost)

    async def wait_closed(self, time_limit: float) -> bool:
        """Wait until the peer closes the connection (a shim that exits); False after time_limit."""
        try:
            await asyncio.wait_for(asyncio.shield(self._receiver), time_limit)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self._receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._receiver
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionLost("the connection was closed"))
