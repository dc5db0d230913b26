"""The streaming HTTP server: token URLs, upgrade to SPDY/3.1 or WebSocket, session dispatch.

h11 parses the request head; after that the connection belongs to the chosen protocol. The
token is the only input taken from the client: options come from the request cached at RPC
time (like kubelet's server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import h11

from cri_py.config.model import Config
from cri_py.streaming import remotecommand
from cri_py.streaming.backend import StdioSession, StreamingBackend, TerminalSize
from cri_py.streaming.channels import CommandChannels
from cri_py.streaming.portforward import SpdyPortForward, parse_port, serve_websocket
from cri_py.streaming.requests import AttachRequest, ExecRequest, PortForwardRequest, StreamRequest
from cri_py.streaming.runtime_backend import RuntimeStreamingBackend
from cri_py.streaming.spdy_session import SpdySession, SpdyStream
from cri_py.streaming.tokens import MAX_IN_FLIGHT, TOKEN_TTL, RequestCache
from cri_py.streaming.websocket import (
    PORTFORWARD_PROTOCOLS,
    REMOTECOMMAND_PROTOCOLS,
    SPDY_TUNNEL_PROTOCOL,
    TunnelWriter,
    WsConnection,
    command_channels,
)

log = logging.getLogger(__name__)

SPDY_REMOTECOMMAND_PROTOCOLS = (
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
)
SPDY_PORTFORWARD_PROTOCOLS = ("portforward.k8s.io",)
STREAM_CREATION_TIMEOUT = 30.0
MAX_HEAD = 64 * 1024
HEAD_TIMEOUT = 30.0

_KIND = {ExecRequest: "exec", AttachRequest: "attach", PortForwardRequest: "portforward"}


def negotiate(offered: list[str], supported: tuple[str, ...]) -> str | None:
    """The first protocol the client lists that we support (header values may be comma lists)."""
    for value in offered:
        for proto in value.split(","):
            if proto.strip() in supported:
                return proto.strip()
    return None


def _spdy_version(protocol: str) -> int:
    return int(protocol[1]) if protocol.startswith("v") else 1


class StreamingServer:
    def __init__(
        self,
        backend: StreamingBackend,
        *,
        address: str = "127.0.0.1",
        port: int = 0,
        token_ttl: float = TOKEN_TTL,
        max_in_flight: int = MAX_IN_FLIGHT,
        scratch_dir: Path | None = None,
    ) -> None:
        self._backend = backend
        self._scratch_dir = scratch_dir
        self._address = address
        self._port = port
        self._cache: RequestCache[StreamRequest] = RequestCache(ttl=token_ttl, max_in_flight=max_in_flight)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.base_url = ""

    @classmethod
    def from_config(cls, config: Config) -> StreamingServer:
        """The daemon's server; the runtimes' exec scratch files live under the run dir."""
        scratch = config.run_dir / "exec"
        return cls(
            RuntimeStreamingBackend(),
            address=config.streaming.address,
            port=config.streaming.port,
            scratch_dir=scratch,
        )

    async def start(self) -> None:
        if self._scratch_dir is not None:
            # Exec specs, pid files and console sockets a previous daemon left when it died.
            await asyncio.to_thread(_clear_scratch, self._scratch_dir)
        self._server = await asyncio.start_server(self._on_connection, self._address, self._port)
        host, port = self._server.sockets[0].getsockname()[:2]
        self._port = port
        host_part = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{host_part}:{port}"
        log.info("streaming server listening on %s", self.base_url)

    @property
    def port(self) -> int:
        return self._port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def url_for(self, request: StreamRequest) -> str:
        """Register `request` and return its single-use URL (raises ResourceExhausted)."""
        token = self._cache.insert(request)
        return f"{self.base_url}/{_KIND[type(request)]}/{token}"

    # -- one HTTP connection --
    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)
        # The connection's outermost task: stop() cancelling it is its normal end.
        with contextlib.suppress(asyncio.CancelledError):
            await self._serve_connection(reader, writer)

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._handle(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, h11.ProtocolError) as e:
            log.debug("streaming connection ended: %s", e)
        except Exception:
            log.exception("streaming connection failed")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # h11 enforces the head limit itself (its default is 16 KiB): beyond it, an answer
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        raw = bytearray()
        try:
            # A client that never finishes its request must not hold a task forever.
            async with asyncio.timeout(HEAD_TIMEOUT):
                request = await _read_request(reader, conn, raw)
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            return await _respond(
                writer, conn, status, b"request head too large" if status == 431 else b"bad request"
            )
        if request is None:
            return
        hdrs: dict[str, list[str]] = {}
        for name, value in request.headers:
            hdrs.setdefault(name.decode().lower(), []).append(value.decode(errors="replace"))
        target = request.target.decode(errors="replace")
        url = urlsplit(target)
        parts = url.path.strip("/").split("/")
        if request.method not in (b"GET", b"POST") or len(parts) != 2 or parts[0] not in _KIND.values():
            return await _respond(writer, conn, 404, b"not found")
        stream_request = self._cache.consume(parts[1])
        if stream_request is None or _KIND[type(stream_request)] != parts[0]:
            return await _respond(writer, conn, 404, b"unknown or expired token")

        connection = ",".join(hdrs.get("connection", [])).lower()
        upgrade = ",".join(hdrs.get("upgrade", [])).lower()
        if "upgrade" not in connection:
            return await _respond(writer, conn, 400, b"unable to upgrade: missing upgrade headers in request")
        if "websocket" in upgrade:
            return await self._serve_websocket(bytes(raw), reader, writer, stream_request, url.query)
        if "spdy/3.1" not in upgrade:
            return await _respond(writer, conn, 400, b"unable to upgrade: unsupported protocol")
        supported = (
            SPDY_PORTFORWARD_PROTOCOLS
            if isinstance(stream_request, PortForwardRequest)
            else SPDY_REMOTECOMMAND_PROTOCOLS
        )
        offered = hdrs.get("x-stream-protocol-version", [])
        if not offered:
            return await _respond(writer, conn, 400, b"unable to upgrade: no protocol requested")
        protocol = negotiate(offered, supported)
        if protocol is None:
            extra = [("X-Accepted-Stream-Protocol-Versions", p) for p in supported]
            return await _respond(writer, conn, 403, b"unable to upgrade: no common protocol", extra)
        writer.write(
            conn.send(
                h11.InformationalResponse(
                    status_code=101,
                    reason=b"Switching Protocols",
                    headers=[
                        ("Connection", "Upgrade"),
                        ("Upgrade", "SPDY/3.1"),
                        ("X-Stream-Protocol-Version", protocol),
                    ],
                )
            )
        )
        await writer.drain()
        trailing, _ = conn.trailing_data
        if isinstance(stream_request, PortForwardRequest):
            await self._serve_spdy_portforward(reader, writer, stream_request, bytes(trailing))
        else:
            await self._serve_spdy_command(reader, writer, stream_request, protocol, bytes(trailing))

    # -- SPDY --
    async def _serve_spdy_command(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        req: ExecRequest | AttachRequest,
        protocol: str,
        trailing: bytes,
    ) -> None:
        version = _spdy_version(protocol)
        arrived: asyncio.Queue[SpdyStream] = asyncio.Queue()
        session = SpdySession(
            reader, writer, is_client=False, on_stream=arrived.put_nowait, initial_data=trailing
        )
        expected = {"error"}
        if req.stdin:
            expected.add("stdin")
        if req.stdout:
            expected.add("stdout")
        if req.stderr and not req.tty:
            expected.add("stderr")
        if req.tty and version >= 3:
            expected.add("resize")

        async def collect() -> dict[str, SpdyStream]:
            streams: dict[str, SpdyStream] = {}
            while not expected <= streams.keys():
                stream = await arrived.get()
                kind = stream.header("streamtype") or ""
                if kind in expected:
                    streams[kind] = stream
                else:
                    log.warning("ignoring SPDY stream of unexpected type %r", kind)
            return streams

        async def command() -> None:
            try:
                streams = await asyncio.wait_for(collect(), STREAM_CREATION_TIMEOUT)
            except TimeoutError:
                log.info("client did not create the expected streams %s in time", sorted(expected))
                return
            channels = CommandChannels(
                version=version,
                error=streams["error"],
                stdin=streams.get("stdin"),
                stdout=streams.get("stdout"),
                stderr=streams.get("stderr"),
                resize=streams.get("resize"),
            )
            await self._run_command(channels, req)

        await _until_either(session.run(), command())
        await session.close()

    async def _serve_spdy_portforward(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        req: PortForwardRequest,
        trailing: bytes,
    ) -> None:
        forwarder = SpdyPortForward(self._backend, req.target)
        session = SpdySession(
            reader, writer, is_client=False, on_stream=forwarder.on_stream, initial_data=trailing
        )
        try:
            await session.run()
        finally:
            await forwarder.close()
            await session.close()

    # -- WebSocket --
    async def _serve_websocket(
        self,
        raw: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        req: StreamRequest,
        query: str,
    ) -> None:
        if isinstance(req, PortForwardRequest):
            ports: list[int] = []
            for value in parse_qs(query).get("port", []):
                for item in value.split(","):
                    port = parse_port(item.strip())
                    if port is None:
                        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                        return
                    ports.append(port)
            if not ports:
                ports = list(req.ports)
            ws = await WsConnection.accept(raw, reader, writer, PORTFORWARD_PROTOCOLS)
            if ws is None:
                return
            if ws.subprotocol == SPDY_TUNNEL_PROTOCOL:
                await self._serve_spdy_tunnel(ws, req)
            else:
                await _until_either(ws.run(), serve_websocket(ws, self._backend, req.target, ports))
            await ws.close()
            return
        ws = await WsConnection.accept(raw, reader, writer, REMOTECOMMAND_PROTOCOLS)
        if ws is None:
            return
        channels, inputs = command_channels(
            ws, stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, tty=req.tty
        )
        # The client waits for a first message as the sign that the server is ready.
        ready = 1 if channels.stdout is not None else 2 if channels.stderr is not None else 3
        await ws.send(ready, b"")

        async def reader_loop() -> None:
            await ws.run()
            for ch in inputs.values():
                ch.end()

        async def command() -> None:
            await self._run_command(channels, req)

        await _until_either(reader_loop(), command())
        await ws.close()

    async def _serve_spdy_tunnel(self, ws: WsConnection, req: PortForwardRequest) -> None:
        """SPDY port-forward carried in WebSocket binary messages (what kubectl tries first)."""
        tunnel_in = asyncio.StreamReader()
        ws.on_raw = tunnel_in.feed_data

        async def ws_reader() -> None:
            await ws.run()
            tunnel_in.feed_eof()

        forwarder = SpdyPortForward(self._backend, req.target)
        session = SpdySession(tunnel_in, TunnelWriter(ws), is_client=False, on_stream=forwarder.on_stream)
        try:
            await _until_either(ws_reader(), session.run())
        finally:
            await forwarder.close()
            await session.close()

    # -- shared --
    async def _run_command(self, channels: CommandChannels, req: ExecRequest | AttachRequest) -> None:
        backend = self._backend
        if isinstance(req, ExecRequest):
            exec_req = req

            async def open_exec(size: TerminalSize | None) -> StdioSession:
                return await backend.exec(
                    exec_req.target,
                    list(exec_req.cmd),
                    tty=exec_req.tty,
                    stdin=exec_req.stdin,
                    initial_size=size,
                )

            await remotecommand.serve(channels, open_exec, wait_first_resize=req.tty)
        else:
            attach_req = req

            async def open_attach(size: TerminalSize | None) -> StdioSession:
                return await backend.attach(attach_req.target)

            end_with_stdin = req.stdin and not req.tty and not req.target.stdin_once
            await remotecommand.serve(
                channels, open_attach, wait_first_resize=False, end_with_stdin=end_with_stdin
            )


async def _read_request(
    reader: asyncio.StreamReader, conn: h11.Connection, raw: bytearray
) -> h11.Request | None:
    """The request head, and the end of its body (upgrade requests carry none, and consuming
    it lets h11 accept our 101); None if the client went away. `raw` keeps every byte read."""
    request: h11.Request | None = None
    body = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            raw += data
            conn.receive_data(data)
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += len(event.data)
            if body > MAX_HEAD:
                raise h11.RemoteProtocolError("request body too large", error_status_hint=413)
        elif isinstance(event, h11.ConnectionClosed):
            return None
        if request is not None and conn.their_state is not h11.SEND_BODY:
            return request


def _clear_scratch(directory: Path) -> None:
    if directory.is_dir():
        for leftover in directory.glob("exec-*"):
            leftover.unlink(missing_ok=True)


async def _until_either(reader: Awaitable[None], work: Awaitable[None]) -> None:
    """Run the connection's reader and its work; the connection ending cancels the work
    (a client that went away leaves no process behind)."""
    reader_task = asyncio.ensure_future(reader)
    work_task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait([reader_task, work_task], return_when=asyncio.FIRST_COMPLETED)
        if work_task not in done:
            work_task.cancel()
        await asyncio.gather(work_task, return_exceptions=True)
    finally:
        for task in (reader_task, work_task):
            task.cancel()
        await asyncio.gather(reader_task, work_task, return_exceptions=True)


async def _respond(
    writer: asyncio.StreamWriter,
    conn: h11.Connection,
    status: int,
    body: bytes,
    extra: list[tuple[str, str]] | None = None,
) -> None:
    headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body))), ("Connection", "close")]
    headers += extra or []
    writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
    writer.write(conn.send(h11.Data(data=body)))
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()
