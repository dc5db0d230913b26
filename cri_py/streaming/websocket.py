"""WebSocket transport: the `websockets` sans-I/O protocol driven over an asyncio stream.

Kubernetes multiplexes channels over one WebSocket: the first byte of each message is the
channel number (`'0'+n` and base64 payload for the base64 protocols); v5 adds a client
message [0xFF, n] that ends channel n's input.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from cri_py.streaming.channels import CommandChannels
from cri_py.streaming.inbox import Inbox

if TYPE_CHECKING:
    # imported where a WebSocket is first served: `websockets` is ~1.2 MiB resident, and a
    # node whose kubelet streams over SPDY (or never streams) needs none of it
    from websockets.frames import Frame
    from websockets.server import ServerProtocol
    from websockets.typing import Subprotocol

log = logging.getLogger(__name__)

REMOTECOMMAND_PROTOCOLS = (
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
)
# client-go's WebSocket port-forward tunnels a whole SPDY connection in binary messages.
SPDY_TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
PORTFORWARD_PROTOCOLS = (SPDY_TUNNEL_PROTOCOL, "v4.channel.k8s.io", "v4.base64.channel.k8s.io")

STDIN, STDOUT, STDERR, ERROR, RESIZE = range(5)
CLOSE_SIGNAL = 0xFF


def protocol_version(subprotocol: str | None) -> int:
    """remotecommand version of a WebSocket subprotocol ("" means channel.k8s.io)."""
    if subprotocol and subprotocol.startswith("v") and "." in subprotocol:
        return int(subprotocol[1 : subprotocol.index(".")])
    return 1


class WsConnection:
    """An accepted WebSocket; `run()` reads until close. Messages go to `on_message`."""

    def __init__(
        self,
        protocol: ServerProtocol,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        subprotocol: str | None,
    ) -> None:
        self._protocol = protocol
        self._reader = reader
        self._writer = writer
        self.subprotocol = subprotocol
        self.base64 = bool(subprotocol and "base64" in subprotocol)
        self.on_message: Callable[[int, bytes], None] = lambda channel, data: None
        self.on_close_signal: Callable[[int], None] = lambda channel: None
        # Set for a tunnel: whole messages, no channel byte.
        self.on_raw: Callable[[bytes], None] | None = None
        self._fragments: list[bytes] = []
        self.closed = False
        # Input channels fed from this connection; reading pauses while one holds too much.
        self.inboxes: list[Inbox] = []

    @classmethod
    async def accept(
        cls,
        raw_request: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        subprotocols: tuple[str, ...],
    ) -> WsConnection | None:
        """Complete the handshake; None if it failed (the error response was sent)."""
        # `websockets` holds subprotocols to the RFC token syntax, which has no "/": the
        # tunnel protocol travels under an alias inside the handshake code only.
        alias = {p: p.replace("/", "_") for p in subprotocols if "/" in p}
        for real, safe in alias.items():
            raw_request = raw_request.replace(real.encode(), safe.encode())
        supported = [alias.get(p, p) for p in subprotocols]
        from websockets.http11 import Request
        from websockets.server import ServerProtocol
        from websockets.typing import Subprotocol

        def select(_: ServerProtocol, offered: Sequence[Subprotocol]) -> Subprotocol | None:
            for choice in supported:
                if choice in offered:
                    return Subprotocol(choice)
            return None  # no subprotocol: channel.k8s.io semantics

        protocol = ServerProtocol(select_subprotocol=select, max_size=None)
        protocol.receive_data(raw_request)
        events = protocol.events_received()
        request = next((e for e in events if isinstance(e, Request)), None)
        if request is None:
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return None
        response = protocol.accept(request)
        chosen = response.headers.get("Sec-WebSocket-Protocol")
        for real, safe in alias.items():
            if chosen == safe:
                del response.headers["Sec-WebSocket-Protocol"]
                response.headers["Sec-WebSocket-Protocol"] = chosen = real
        protocol.send_response(response)
        for chunk in protocol.data_to_send():
            writer.write(chunk)
        await writer.drain()
        if response.status_code != 101:
            return None
        return cls(protocol, reader, writer, chosen)

    def _flush(self) -> None:
        for chunk in self._protocol.data_to_send():
            if chunk:
                self._writer.write(chunk)

    async def send(self, channel: int, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("WebSocket closed")
        if self.base64:
            self._protocol.send_text(bytes([0x30 + channel]) + base64.b64encode(data))
        else:
            self._protocol.send_binary(bytes([channel]) + data)
        self._flush()
        await self._writer.drain()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                self._protocol.send_close(code, reason)
                self._flush()
                await self._writer.drain()
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()

    async def run(self) -> None:
        from websockets.frames import Frame

        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    self._protocol.receive_eof()
                else:
                    self._protocol.receive_data(data)
                for event in self._protocol.events_received():
                    if isinstance(event, Frame):
                        self._on_frame(event)
                self._flush()
                if not data or self._protocol.close_code is not None:
                    return
                for inbox in self.inboxes:
                    if inbox.over_limit:
                        await inbox.drained()
        except ConnectionError:
            return

    def _on_frame(self, frame: Frame) -> None:
        from websockets.frames import Opcode

        if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            self._fragments.append(bytes(frame.data))
            if not frame.fin:
                return
            message = b"".join(self._fragments)
            self._fragments.clear()
            if self.on_raw is not None:
                self.on_raw(message)
                return
            if not message:
                return
            if self.base64:
                if message[0] < 0x30:
                    return
                channel = message[0] - 0x30
                try:
                    payload = base64.b64decode(message[1:])
                except binascii.Error:
                    log.debug("bad base64 on channel %d", channel)
                    return
            else:
                channel, payload = message[0], message[1:]
            if channel == CLOSE_SIGNAL and len(payload) == 1:
                self.on_close_signal(payload[0])
            else:
                self.on_message(channel, payload)

    def send_raw_nowait(self, data: bytes) -> None:
        """Queue one binary message without a channel byte (tunnel); pair with `drain`."""
        if self.closed:
            raise ConnectionResetError("WebSocket closed")
        self._protocol.send_binary(data)
        self._flush()

    async def drain(self) -> None:
        await self._writer.drain()


class TunnelWriter:
    """Makes a WebSocket the sending half of a byte stream (for SPDY in WebSocket)."""

    def __init__(self, conn: WsConnection) -> None:
        self._conn = conn

    def write(self, data: bytes) -> None:
        self._conn.send_raw_nowait(data)

    async def drain(self) -> None:
        await self._conn.drain()

    def close(self) -> None:
        # The WebSocket itself is closed by its owner, after the SPDY session's GOAWAY.
        pass

    async def wait_closed(self) -> None:
        pass


class WsInChannel(Inbox):
    """One input channel (stdin, resize, port-forward data) of a WebSocket."""


class WsOutChannel:
    def __init__(self, conn: WsConnection, channel: int) -> None:
        self._conn = conn
        self._channel = channel

    async def write(self, data: bytes) -> None:
        if data:
            await self._conn.send(self._channel, data)

    async def close(self) -> None:
        # Channels end together when the WebSocket closes with 1000 (also in v5: the
        # close signal is client-to-server only).
        pass


def command_channels(
    conn: WsConnection, *, stdin: bool, stdout: bool, stderr: bool, tty: bool
) -> tuple[CommandChannels, dict[int, WsInChannel]]:
    """The channels a request asked for, and the inputs `conn.on_message` must feed."""
    version = protocol_version(conn.subprotocol)
    inputs: dict[int, WsInChannel] = {}
    if stdin:
        inputs[STDIN] = WsInChannel()
    if tty:
        inputs[RESIZE] = WsInChannel()
    conn.inboxes.extend(inputs.values())
    channels = CommandChannels(
        version=version,
        error=WsOutChannel(conn, ERROR),
        stdin=inputs.get(STDIN),
        stdout=WsOutChannel(conn, STDOUT) if stdout else None,
        stderr=WsOutChannel(conn, STDERR) if stderr and not tty else None,
        resize=inputs.get(RESIZE),
    )

    def on_message(channel: int, data: bytes) -> None:
        if channel in inputs:
            inputs[channel].feed(data)

    def on_close_signal(channel: int) -> None:
        if channel in inputs:
            inputs[channel].end()

    conn.on_message = on_message
    conn.on_close_signal = on_close_signal
    return channels, inputs
