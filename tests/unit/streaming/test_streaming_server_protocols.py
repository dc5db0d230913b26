"""The streaming server's HTTP and protocol negotiation, with a fake backend at the one seam."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from cri_py.config.model import Config, StreamingConfig
from cri_py.errors import ResourceExhausted
from cri_py.streaming import server as streaming_server
from cri_py.streaming import spdy
from cri_py.streaming.backend import AttachTarget, ExecTarget, PortForwardTarget, StdioSession, TerminalSize
from cri_py.streaming.requests import AttachRequest, ExecRequest, PortForwardRequest
from cri_py.streaming.server import StreamingServer
from tests.e2e.stream_client import (
    HandshakeError,
    SpdyCommandSession,
    run_command,
    spdy_upgrade,
    ws_port_forward,
)


class EchoSession:
    """Echoes stdin to stdout upper-cased; exits with the code named by the command."""

    def __init__(self, exit_code: int) -> None:
        self._out: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self._exit_code = exit_code
        self.sizes: list[TerminalSize] = []
        self.closed = False

    async def write_stdin(self, data: bytes) -> None:
        self._out.put_nowait((1, data.upper()))

    async def close_stdin(self) -> None:
        self._out.put_nowait((2, b"stdin closed"))
        self._out.put_nowait((0, b""))

    async def read_output(self) -> tuple[int, bytes]:
        return await self._out.get()

    async def resize(self, size: TerminalSize) -> None:
        self.sizes.append(size)

    async def wait(self) -> int | None:
        return self._exit_code

    async def close(self) -> None:
        self.closed = True


class FakeBackend:
    def __init__(self) -> None:
        self.sessions: list[EchoSession] = []

    async def exec(
        self, target: ExecTarget, cmd: list[str], *, tty: bool, stdin: bool, initial_size: TerminalSize | None
    ) -> StdioSession:
        session = EchoSession(int(cmd[0]))
        self.sessions.append(session)
        return session

    async def attach(self, target: AttachTarget) -> StdioSession:
        return EchoSession(0)

    async def connect(
        self, target: PortForwardTarget, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        raise OSError("no pods here")


TARGET = ExecTarget(None, "ctr", {})  # type: ignore[arg-type]  # the fake backend runs nothing


def request(code: int, *, stdin: bool = True, tty: bool = False) -> ExecRequest:
    return ExecRequest(TARGET, (str(code),), tty=tty, stdin=stdin, stdout=True, stderr=not tty)


def serve(test: Any) -> None:
    async def main() -> None:
        backend = FakeBackend()
        server = StreamingServer(backend)
        await server.start()
        try:
            await test(server, backend)
        finally:
            await server.stop()

    asyncio.run(main())


async def raw_request(server: StreamingServer, head: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(head.encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return data


def test_spdy_stdin_echo_and_exit_code() -> None:
    async def test(server: StreamingServer, backend: FakeBackend) -> None:
        res = await run_command(server.url_for(request(7)), stdin=b"abc")
        assert res.protocol == "v4.channel.k8s.io"  # v5 is offered first but not served over SPDY
        assert (res.stdout, res.stderr, res.exit_code) == (b"ABC", b"stdin closed", 7)
        assert backend.sessions[0].closed

    serve(test)


@pytest.mark.parametrize("protocol", ["v3.channel.k8s.io", "v2.channel.k8s.io"])
def test_old_protocols_report_errors_as_text(protocol: str) -> None:
    async def test(server: StreamingServer, backend: FakeBackend) -> None:
        res = await run_command(server.url_for(request(3)), stdin=b"", protocols=(protocol,))
        assert res.protocol == protocol
        assert res.raw_status == b"command terminated with non-zero exit code: exit status 3"
        ok = await run_command(server.url_for(request(0)), stdin=b"", protocols=(protocol,))
        assert ok.raw_status == b""

    serve(test)


def test_tty_resize_reaches_the_session() -> None:
    async def test(server: StreamingServer, backend: FakeBackend) -> None:
        session = await SpdyCommandSession.connect(server.url_for(request(0, tty=True)), stdin=True, tty=True)
        await session.resize(80, 24)
        await session.resize(100, 50)
        await session.write_stdin(b"x")
        await session.read_stdout_until(b"X")
        await session.close_stdin()
        await session.finish()
        assert backend.sessions[0].sizes[:1] == [TerminalSize(80, 24)]
        assert TerminalSize(100, 50) in backend.sessions[0].sizes

    serve(test)


def test_unknown_and_reused_tokens_are_404() -> None:
    async def test(server: StreamingServer, backend: FakeBackend) -> None:
        url = server.url_for(request(0))
        await run_command(url, stdin=b"")
        for bad in (url, server.base_url + "/exec/nothere", server.base_url + "/other/x"):
            with pytest.raises(HandshakeError) as e:
                await spdy_upgrade(bad, ("v4.channel.k8s.io",))
            assert e.value.status == 404
        # a token for exec is not valid on the attach route
        attach = server.url_for(
            AttachRequest(AttachTarget(None, "ctr", Path("/y"), False, False), False, True, True, False)  # type: ignore[arg-type]
        )
        with pytest.raises(HandshakeError):
            await spdy_upgrade(attach.replace("/attach/", "/exec/"), ("v4.channel.k8s.io",))

    serve(test)


def test_upgrade_negotiation_errors() -> None:
    async def test(server: StreamingServer, backend: FakeBackend) -> None:
        no_upgrade = await raw_request(
            server, f"POST {server.url_for(request(0))[len(server.base_url) :]} HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert no_upgrade.startswith(b"HTTP/1.1 400")
        with pytest.raises(HandshakeError) as none_common:
            await spdy_upgrade(server.url_for(request(0)), ("v9.channel.k8s.io",))
        assert none_common.value.status == 403
        path = server.url_for(request(0))[len(server.base_url) :]
        no_proto = await raw_request(
            server, f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n"
        )
        assert no_proto.startswith(b"HTTP/1.1 400")
        path = server.url_for(request(0))[len(server.base_url) :]
        forbidden = await raw_request(
            server,
            f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
            "X-Stream-Protocol-Version: nope\r\n\r\n",
        )
        assert forbidden.startswith(b"HTTP/1.1 403")
        assert b"X-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io" in forbidden
        # comma-separated offers are split; the client's order wins
        reader, writer, protocol, _ = await spdy_upgrade(
            server.url_for(request(0)), ("v9.channel.k8s.io, v2.channel.k8s.io", "v4.channel.k8s.io")
        )
        assert protocol == "v2.channel.k8s.io"
        writer.close()

    serve(test)


def test_spdy_pings_are_echoed() -> None:
    async def test(server: StreamingServer, backend: FakeBackend) -> None:
        reader, writer, _, rest = await spdy_upgrade(server.url_for(request(0)), ("v4.channel.k8s.io",))
        codec = spdy.FrameCodec()
        writer.write(codec.encode(spdy.Ping(1)) + codec.encode(spdy.Ping(3)))
        frames: list[spdy.Frame] = codec.receive(rest)
        while len(frames) < 2:
            frames += codec.receive(await asyncio.wait_for(reader.read(100), 5))
        assert frames[:2] == [spdy.Ping(1), spdy.Ping(3)]
        writer.close()

    serve(test)


@pytest.mark.parametrize(
    "subprotocol", ["v5.channel.k8s.io", "v4.channel.k8s.io", "v4.base64.channel.k8s.io"]
)
def test_websocket_ready_signal_and_status(subprotocol: str) -> None:
    async def test(server: StreamingServer, backend: FakeBackend) -> None:
        url = server.url_for(request(4, stdin=False)).replace("http://", "ws://")
        async with connect(url, subprotocols=[subprotocol]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == subprotocol
            first = await ws.recv()
            assert first in (b"\x01", "1")  # empty message on stdout: the server is ready
            messages = [m async for m in ws]
            assert ws.close_code == 1000
        error = [m for m in messages if m[:1] in (b"\x03", "3")]
        assert len(error) == 1

    serve(test)


def test_websocket_port_forward_reports_dial_errors() -> None:
    async def test(server: StreamingServer, backend: FakeBackend) -> None:
        url = server.url_for(PortForwardRequest(PortForwardTarget(Path("/nonexistent")), "pod"))
        [(data, error)] = await ws_port_forward(url, [8080], [b""])
        assert data == b"" and error == b"no pods here"

    serve(test)


def test_server_from_config_clears_scratch_and_listens_where_configured(tmp_path: Path) -> None:
    scratch = tmp_path / "exec"
    scratch.mkdir()
    (scratch / "exec-abc-123.json").write_text("{}")
    (scratch / "keep.txt").write_text("not ours")
    config = Config(run_dir=tmp_path, streaming=StreamingConfig(address="127.0.0.1", port=0))

    async def main() -> None:
        server = StreamingServer.from_config(config)
        await server.start()
        try:
            assert server.base_url == f"http://127.0.0.1:{server.port}" and server.port > 0
            assert sorted(p.name for p in scratch.iterdir()) == ["keep.txt"]
        finally:
            await server.stop()

    asyncio.run(main())


def test_in_flight_bound_is_resource_exhausted() -> None:
    server = StreamingServer(FakeBackend(), max_in_flight=2)
    server.url_for(request(0))
    server.url_for(request(0))
    with pytest.raises(ResourceExhausted):
        server.url_for(request(0))


def test_a_head_up_to_64_kib_is_read_and_a_larger_one_is_refused_with_431() -> None:
    async def test(server: StreamingServer, backend: FakeBackend) -> None:
        # 20 KiB of headers: more than h11's own default, within ours
        big = await raw_request(
            server, "GET /exec/nope HTTP/1.1\r\nHost: x\r\nX-Pad: " + "a" * 20_000 + "\r\n\r\n"
        )
        assert big.startswith(b"HTTP/1.1 404 ")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /exec/nope HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 70_000)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65536), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 431 ")

    serve(test)


def test_a_request_body_that_never_ends_is_timed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming_server, "HEAD_TIMEOUT", 0.2)

    async def test(server: StreamingServer, backend: FakeBackend) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /exec/nope HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npart")
        await writer.drain()
        # the server gives up on the rest and closes the connection
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()

    serve(test)
