"""An asyncio SPDY/3.1 connection on top of the frame codec: streams with read/write/close.

Used by the streaming server (peer-opened streams, odd ids) and by the test client
(locally opened streams). Frames are encoded and written in one synchronous step, so frames
from concurrent tasks never interleave and the header compression state stays in wire order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from cri_py.streaming import spdy
from cri_py.streaming.inbox import Inbox

log = logging.getLogger(__name__)

# Frames larger than this are split: keeps one busy stream from delaying the others.
CHUNK = 32 * 1024


class ByteWriter(Protocol):
    """The sending half of the connection: an asyncio StreamWriter, or a WebSocket tunnel."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


class SpdyStream:
    def __init__(self, session: SpdySession, stream_id: int, headers: spdy.HeaderBlock) -> None:
        self.session = session
        self.id = stream_id
        self.headers = headers
        self.inbox = Inbox()
        self.remote_closed = False
        self.local_closed = False
        self.was_reset = False
        self.replied = asyncio.Event()

    def header(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[0] if values else None

    async def read(self) -> bytes:
        """Next chunk from the peer; b"" once the peer finished or reset the stream."""
        return await self.inbox.read()

    async def write(self, data: bytes) -> None:
        if self.local_closed or self.was_reset:
            raise ConnectionResetError(f"SPDY stream {self.id} is closed")
        for i in range(0, len(data), CHUNK):
            self.session.send(spdy.DataFrame(self.id, data[i : i + CHUNK]))
        await self.session.drain()

    async def close(self) -> None:
        """Half-close our side (DATA with FIN)."""
        if self.local_closed or self.was_reset or self.session.closed:
            self.local_closed = True
            return
        self.local_closed = True
        self.session.send(spdy.DataFrame(self.id, b"", spdy.FLAG_FIN))
        with contextlib.suppress(ConnectionError):
            await self.session.drain()
        self.session.forget_if_done(self)

    def reset(self, status: int = spdy.RstStatus.CANCEL) -> None:
        if self.was_reset:
            return
        if not self.session.closed:
            self.session.send(spdy.RstStream(self.id, status))
        self._on_reset()

    # -- driven by the session --
    def _on_data(self, data: bytes, fin: bool) -> None:
        if self.remote_closed:
            return
        self.inbox.feed(data)
        if fin:
            self._on_remote_fin()

    def _on_remote_fin(self) -> None:
        if not self.remote_closed:
            self.remote_closed = True
            self.inbox.end()

    def _on_reset(self) -> None:
        self.was_reset = True
        self.local_closed = True
        self.inbox.abandon()
        self._on_remote_fin()
        self.session.forget_if_done(self)


class SpdySession:
    """One SPDY connection. `run()` reads frames until the peer goes away or the socket closes.

    `on_stream` is called for each stream the peer opens, after our SYN_REPLY went out.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: ByteWriter,
        *,
        is_client: bool,
        on_stream: Callable[[SpdyStream], None] | None = None,
        initial_data: bytes = b"",
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._codec = spdy.FrameCodec()
        self._streams: dict[int, SpdyStream] = {}
        self._on_stream = on_stream
        self._initial = initial_data
        self._next_id = 1 if is_client else 2
        self._next_ping = 1 if is_client else 2
        self._last_peer_id = 0
        self._pings: dict[int, asyncio.Future[None]] = {}
        self.closed = False
        self.peer_went_away = False

    def send(self, frame: spdy.Frame) -> None:
        if self.closed:
            raise ConnectionResetError("SPDY connection closed")
        self._writer.write(self._codec.encode(frame))

    async def drain(self) -> None:
        await self._writer.drain()

    def forget_if_done(self, stream: SpdyStream) -> None:
        if stream.local_closed and stream.remote_closed:
            self._streams.pop(stream.id, None)

    async def open_stream(self, headers: spdy.HeaderBlock, *, wait_reply: bool = True) -> SpdyStream:
        stream_id = self._next_id
        self._next_id += 2
        stream = SpdyStream(self, stream_id, headers)
        self._streams[stream_id] = stream
        self.send(spdy.SynStream(stream_id, headers))
        await self.drain()
        if wait_reply:
            await stream.replied.wait()
        return stream

    async def ping(self) -> None:
        ping_id = self._next_ping
        self._next_ping += 2
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings[ping_id] = fut
        self.send(spdy.Ping(ping_id))
        await self.drain()
        await fut

    async def run(self) -> None:
        try:
            if self._initial:
                self._handle(self._codec.receive(self._initial))
            while not self.peer_went_away:
                data = await self._reader.read(65536)
                if not data:
                    break
                self._handle(self._codec.receive(data))
                for stream in list(self._streams.values()):
                    if stream.inbox.over_limit:
                        await stream.inbox.drained()
        except spdy.ProtocolError as e:
            log.warning("SPDY protocol error from peer: %s", e)
            with contextlib.suppress(ConnectionError):
                self.send(spdy.GoAway(self._last_peer_id, spdy.GoAwayStatus.PROTOCOL_ERROR))
        except ConnectionError:
            pass
        finally:
            for stream in list(self._streams.values()):
                stream._on_remote_fin()
            for fut in self._pings.values():
                if not fut.done():
                    fut.set_exception(ConnectionResetError("SPDY connection closed"))

    def _handle(self, frames: list[spdy.Frame]) -> None:
        for frame in frames:
            match frame:
                case spdy.DataFrame(sid, data, _):
                    stream = self._streams.get(sid)
                    # spdystream drops data for unknown streams; so do we.
                    if stream is not None:
                        stream._on_data(data, frame.fin)
                        self.forget_if_done(stream)
                case spdy.SynStream(sid, hdrs, _):
                    if sid <= self._last_peer_id or sid in self._streams:
                        self.send(spdy.RstStream(sid, spdy.RstStatus.PROTOCOL_ERROR))
                        continue
                    self._last_peer_id = sid
                    stream = SpdyStream(self, sid, hdrs)
                    self._streams[sid] = stream
                    self.send(spdy.SynReply(sid))
                    stream.replied.set()
                    if frame.fin:
                        stream._on_remote_fin()
                    if self._on_stream is not None:
                        self._on_stream(stream)
                    else:
                        stream.reset(spdy.RstStatus.REFUSED_STREAM)
                case spdy.SynReply(sid, _, _) | spdy.Headers(sid, _, _):
                    stream = self._streams.get(sid)
                    if stream is not None:
                        stream.replied.set()
                        if frame.fin:
                            stream._on_remote_fin()
                            self.forget_if_done(stream)
                case spdy.RstStream(sid, _):
                    stream = self._streams.get(sid)
                    if stream is not None:
                        stream.replied.set()
                        stream._on_reset()
                case spdy.Ping(ping_id):
                    fut = self._pings.pop(ping_id, None)
                    if fut is not None:
                        if not fut.done():
                            fut.set_result(None)
                    else:
                        self.send(frame)
                case spdy.GoAway():
                    self.peer_went_away = True
                case spdy.Settings() | spdy.WindowUpdate():
                    pass  # no flow control, see spdy.py

    async def close(self) -> None:
        """Say GOAWAY and close the socket. Idempotent."""
        if self.closed:
            return
        with contextlib.suppress(ConnectionError):
            self.send(spdy.GoAway(self._last_peer_id))
            await self.drain()
        self.closed = True
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
