"""cri-py's own client for the streaming server: exec/attach/port-forward over SPDY and WebSocket.

Speaks what client-go (kubectl, crictl) speaks, so it doubles as a conformance probe. Usable
from scripts too:

    result = asyncio.run(run_command(url, stdin=b"hi", transport="spdy"))
    print(result.exit_code, result.stdout)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import struct
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from cri_py.streaming import spdy
from cri_py.streaming.spdy_session import SpdySession, SpdyStream

REMOTECOMMAND_SPDY = (
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
)
Transport = Literal["spdy", "websocket"]


class HandshakeError(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"upgrade refused: HTTP {status}: {body!r}")
        self.status = status
        self.body = body


@dataclass
class CommandResult:
    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int | None = None
    error: str | None = None  # a failure that is not a plain non-zero exit
    raw_status: bytes = b""
    protocol: str = ""


def parse_status(raw: bytes, version: int) -> tuple[int | None, str | None]:
    """(exit code, other error) the way client-go reads the error stream."""
    if not raw:
        return 0, None
    if version < 4:
        return None, raw.decode(errors="replace")
    status = json.loads(raw)
    if status.get("status") == "Success":
        return 0, None
    if status.get("reason") == "NonZeroExitCode":
        for cause in status.get("details", {}).get("causes", []):
            if cause.get("reason") == "ExitCode":
                return int(cause["message"]), None
    return None, str(status.get("message", raw.decode(errors="replace")))


def _version_of(protocol: str) -> int:
    return int(protocol[1]) if protocol.startswith("v") else 1


async def _read_all(stream: SpdyStream) -> bytes:
    chunks = []
    while data := await stream.read():
        chunks.append(data)
    return b"".join(chunks)


async def spdy_upgrade(
    url: str, protocols: tuple[str, ...]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str, bytes]:
    """POST + Upgrade: SPDY/3.1; returns the socket, the negotiated protocol and early bytes."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    reader, writer = await asyncio.open_connection(host, port)
    lines = [
        f"POST {parts.path} HTTP/1.1",
        f"Host: {host}:{port}",
        "User-Agent: cri-py-stream-client",
        "Content-Length: 0",
        "Connection: Upgrade",
        "Upgrade: SPDY/3.1",
        *(f"X-Stream-Protocol-Version: {p}" for p in protocols),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    head = b""
    while b"\r\n\r\n" not in head:
        data = await reader.read(65536)
        if not data:
            break
        head += data
    head, _, rest = head.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode(errors="replace").split("\r\n")
    status = int(status_line.split()[1]) if len(status_line.split()) > 1 else 0
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if status != 101:
        body = rest
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            body += await asyncio.wait_for(reader.read(65536), 1)
        writer.close()
        raise HandshakeError(status, body)
    return reader, writer, headers.get("x-stream-protocol-version", "channel.k8s.io"), rest


class CommandSession:
    """One exec/attach session; same methods over SPDY and WebSocket."""

    protocol: str
    version: int

    async def write_stdin(self, data: bytes) -> None:
        raise NotImplementedError

    async def close_stdin(self) -> None:
        raise NotImplementedError

    async def resize(self, width: int, height: int) -> None:
        raise NotImplementedError

    async def read_stdout_until(self, marker: bytes, wait_s: float = 10) -> bytes:
        raise NotImplementedError

    async def finish(self, wait_s: float = 30) -> CommandResult:
        raise NotImplementedError

    async def abort(self) -> None:
        """Drop the TCP connection without any goodbye (a client that vanished)."""
        raise NotImplementedError


@dataclass
class _Output:
    data: bytearray = field(default_factory=bytearray)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        self.changed.set()

    async def until(self, marker: bytes, wait_s: float) -> bytes:
        async with asyncio.timeout(wait_s):
            while marker not in self.data:
                self.changed.clear()
                await self.changed.wait()
        return bytes(self.data)


class SpdyCommandSession(CommandSession):
    def __init__(
        self,
        session: SpdySession,
        reader_task: asyncio.Task[None],
        writer: asyncio.StreamWriter,
        protocol: str,
        streams: dict[str, SpdyStream],
    ) -> None:
        self._session = session
        self._writer = writer
        self.protocol = protocol
        self.version = _version_of(protocol)
        self._streams = streams
        self._stdout = _Output()
        self._stderr = _Output()
        self._reader_task = reader_task
        self._pumps = [
            asyncio.create_task(self._pump(name, out))
            for name, out in (("stdout", self._stdout), ("stderr", self._stderr))
            if name in streams
        ]

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        stdin: bool = False,
        stdout: bool = True,
        stderr: bool = True,
        tty: bool = False,
        protocols: tuple[str, ...] = REMOTECOMMAND_SPDY,
    ) -> SpdyCommandSession:
        reader, writer, protocol, rest = await spdy_upgrade(url, protocols)
        session = SpdySession(reader, writer, is_client=True, initial_data=rest)
        reader_task = asyncio.create_task(session.run())
        try:
            streams: dict[str, SpdyStream] = {}
            kinds = ["error"]
            kinds += ["stdin"] if stdin else []
            kinds += ["stdout"] if stdout else []
            kinds += ["stderr"] if stderr and not tty else []
            kinds += ["resize"] if tty and _version_of(protocol) >= 3 else []
            for kind in kinds:
                streams[kind] = await asyncio.wait_for(
                    session.open_stream(spdy.headers({"streamtype": kind})), 10
                )
        except BaseException:
            writer.close()
            reader_task.cancel()
            await asyncio.gather(reader_task, return_exceptions=True)
            raise
        return cls(session, reader_task, writer, protocol, streams)

    async def _pump(self, name: str, out: _Output) -> None:
        stream = self._streams[name]
        while data := await stream.read():
            out.add(data)

    async def write_stdin(self, data: bytes) -> None:
        await self._streams["stdin"].write(data)

    async def close_stdin(self) -> None:
        await self._streams["stdin"].close()

    async def resize(self, width: int, height: int) -> None:
        await self._streams["resize"].write(json.dumps({"Width": width, "Height": height}).encode() + b"\n")

    async def read_stdout_until(self, marker: bytes, wait_s: float = 10) -> bytes:
        return await self._stdout.until(marker, wait_s)

    async def finish(self, wait_s: float = 30) -> CommandResult:
        async with asyncio.timeout(wait_s):
            await asyncio.gather(*self._pumps)
            raw = await _read_all(self._streams["error"])
        code, error = parse_status(raw, self.version)
        await self._close()
        return CommandResult(
            bytes(self._stdout.data), bytes(self._stderr.data), code, error, raw, self.protocol
        )

    async def _close(self) -> None:
        await self._session.close()
        self._reader_task.cancel()
        for task in self._pumps:
            task.cancel()
        await asyncio.gather(self._reader_task, *self._pumps, return_exceptions=True)

    async def abort(self) -> None:
        self._writer.transport.abort()
        self._session.closed = True
        await self._close()


class WsCommandSession(CommandSession):
    def __init__(self, ws: ClientConnection, protocol: str) -> None:
        self._ws = ws
        self.protocol = protocol or ""
        self.version = _version_of(self.protocol) if self.protocol else 1
        self._base64 = "base64" in self.protocol
        self._stdout = _Output()
        self._stderr = _Output()
        self._error = bytearray()
        self._close_code: int | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls, url: str, *, protocols: tuple[str, ...] = ("v5.channel.k8s.io",)
    ) -> WsCommandSession:
        ws_url = url.replace("http://", "ws://", 1)
        try:
            ws = await connect(ws_url, subprotocols=[Subprotocol(p) for p in protocols], max_size=None)
        except InvalidStatus as e:
            raise HandshakeError(e.response.status_code, bytes(e.response.body or b"")) from e
        return cls(ws, ws.subprotocol or "")

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                raw = message.encode() if isinstance(message, str) else message
                if not raw:
                    continue
                if self._base64:
                    channel, payload = raw[0] - 0x30, base64.b64decode(raw[1:])
                else:
                    channel, payload = raw[0], raw[1:]
                if channel == 1:
                    self._stdout.add(payload)
                elif channel == 2:
                    self._stderr.add(payload)
                elif channel == 3:
                    self._error += payload
        finally:
            self._close_code = self._ws.close_code

    async def _send(self, channel: int, data: bytes) -> None:
        if self._base64:
            await self._ws.send(chr(0x30 + channel) + base64.b64encode(data).decode())
        else:
            await self._ws.send(bytes([channel]) + data)

    async def write_stdin(self, data: bytes) -> None:
        await self._send(0, data)

    async def close_stdin(self) -> None:
        if self.version >= 5:
            await self._ws.send(bytes([0xFF, 0]))

    async def resize(self, width: int, height: int) -> None:
        await self._send(4, json.dumps({"Width": width, "Height": height}).encode())

    async def read_stdout_until(self, marker: bytes, wait_s: float = 10) -> bytes:
        return await self._stdout.until(marker, wait_s)

    async def finish(self, wait_s: float = 30) -> CommandResult:
        async with asyncio.timeout(wait_s):
            await self._reader
        raw = bytes(self._error)
        code, error = parse_status(raw, self.version)
        if self._close_code != 1000 and error is None:
            error = f"websocket closed with code {self._close_code}"
        return CommandResult(
            bytes(self._stdout.data), bytes(self._stderr.data), code, error, raw, self.protocol
        )

    async def abort(self) -> None:
        self._ws.transport.abort()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


async def open_command(
    url: str,
    transport: Transport = "spdy",
    *,
    stdin: bool = False,
    stdout: bool = True,
    stderr: bool = True,
    tty: bool = False,
    protocols: tuple[str, ...] | None = None,
) -> CommandSession:
    if transport == "spdy":
        return await SpdyCommandSession.connect(
            url, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty, protocols=protocols or REMOTECOMMAND_SPDY
        )
    return await WsCommandSession.connect(url, protocols=protocols or ("v5.channel.k8s.io",))


async def run_command(
    url: str,
    transport: Transport = "spdy",
    *,
    stdin: bytes | None = None,
    tty: bool = False,
    stderr: bool = True,
    protocols: tuple[str, ...] | None = None,
    wait_s: float = 30,
) -> CommandResult:
    """One exec/attach from start to end: send `stdin` (then close it), collect the output."""
    session = await open_command(
        url, transport, stdin=stdin is not None, stderr=stderr and not tty, tty=tty, protocols=protocols
    )
    if stdin is not None:
        if stdin:
            await session.write_stdin(stdin)
        await session.close_stdin()
    return await session.finish(wait_s)


# -- port-forward --


class SpdyPortForwardClient:
    def __init__(self, session: SpdySession, writer: asyncio.StreamWriter) -> None:
        self._session = session
        self._writer = writer
        self._reader = asyncio.create_task(session.run())
        self._next_request = 0

    @classmethod
    async def connect(cls, url: str) -> SpdyPortForwardClient:
        reader, writer, _, rest = await spdy_upgrade(url, ("portforward.k8s.io",))
        return cls(SpdySession(reader, writer, is_client=True, initial_data=rest), writer)

    async def open(self, port: int) -> tuple[SpdyStream, SpdyStream]:
        """(error, data) streams of one forwarded connection, as client-go opens them."""
        request_id = str(self._next_request)
        self._next_request += 1
        hdrs = {"port": str(port), "requestid": request_id}
        error = await self._session.open_stream(spdy.headers({"streamtype": "error", **hdrs}))
        await error.close()
        data = await self._session.open_stream(spdy.headers({"streamtype": "data", **hdrs}))
        return error, data

    async def request(self, port: int, payload: bytes, wait_s: float = 10) -> tuple[bytes, bytes]:
        """Send `payload`, read until the remote closes; returns (data received, error text)."""
        error, data = await self.open(port)
        async with asyncio.timeout(wait_s):
            if payload:
                await data.write(payload)
            received, err = await asyncio.gather(_read_all(data), _read_all(error))
        data.reset()
        return received, err

    async def close(self) -> None:
        await self._session.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def abort(self) -> None:
        """Drop the TCP connection without any goodbye."""
        self._writer.transport.abort()
        self._session.closed = True
        await self.close()


async def ws_port_forward(
    url: str, ports: list[int], payloads: list[bytes], wait_s: float = 10
) -> list[tuple[bytes, bytes]]:
    """WebSocket port-forward: one connection per port; returns (data, error) per port."""
    query = "&".join(f"port={p}" for p in ports)
    ws_url = url.replace("http://", "ws://", 1) + "?" + query
    results: list[dict[str, bytearray]] = [{"data": bytearray(), "error": bytearray()} for _ in ports]
    seen: set[int] = set()
    async with asyncio.timeout(wait_s):
        async with connect(ws_url, subprotocols=[Subprotocol("v4.channel.k8s.io")], max_size=None) as ws:
            for i, payload in enumerate(payloads):
                if payload:
                    await ws.send(bytes([2 * i]) + payload)
            async for message in ws:
                raw = message.encode() if isinstance(message, str) else message
                channel, body = raw[0], raw[1:]
                slot = results[channel // 2]
                key = "data" if channel % 2 == 0 else "error"
                # The first message of each channel is the port number (little-endian u16).
                if channel not in seen:
                    seen.add(channel)
                    if struct.unpack("<H", body)[0] != ports[channel // 2]:
                        raise AssertionError(
                            f"channel {channel} announced {body!r}, not port {ports[channel // 2]}"
                        )
                    continue
                slot[key] += body
    return [(bytes(r["data"]), bytes(r["error"])) for r in results]
