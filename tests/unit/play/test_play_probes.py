"""Probe checks against servers on 127.0.0.1: success, refusal, HTTP status codes, named ports."""

from __future__ import annotations

import asyncio
import socket

import pytest
from kubernetes import client as k8s

from cri_py.play.probes import http_check, resolve_port, tcp_check


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve(status: str) -> tuple[asyncio.Server, int, list[bytes]]:
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], requests


def test_tcp_check() -> None:
    async def scenario() -> None:
        server, port, _ = await serve("200 OK")
        async with server:
            assert await tcp_check("127.0.0.1", port, 1) == (True, "")
        ok, detail = await tcp_check("127.0.0.1", closed_port(), 1)
        assert not ok and detail.startswith("dial tcp 127.0.0.1:")

    asyncio.run(scenario())


@pytest.mark.parametrize(("status", "ok"), [("200 OK", True), ("302 Found", True), ("404 Not Found", False)])
def test_http_check_status_codes(status: str, ok: bool) -> None:
    action = k8s.V1HTTPGetAction(
        path="/healthz", port=80, http_headers=[k8s.V1HTTPHeader(name="X-Probe", value="yes")]
    )

    async def scenario() -> tuple[bool, str, list[bytes]]:
        server, port, requests = await serve(status)
        async with server:
            result = await http_check("127.0.0.1", port, action, 1)
        return result[0], result[1], requests

    got, detail, requests = asyncio.run(scenario())
    assert got is ok
    assert requests[0].startswith(b"GET /healthz HTTP/1.1\r\n") and b"X-Probe: yes\r\n" in requests[0]
    if not ok:
        assert detail == "HTTP probe failed with statuscode: 404"


def test_http_check_times_out() -> None:
    async def scenario() -> tuple[bool, str]:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(5)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            return await http_check("127.0.0.1", port, k8s.V1HTTPGetAction(port=port), 0.2)

    ok, detail = asyncio.run(scenario())
    assert not ok and detail.endswith("timed out after 0.2s")


def test_resolve_port() -> None:
    container = k8s.V1Container(name="c", ports=[k8s.V1ContainerPort(name="http", container_port=8080)])
    assert resolve_port("http", container) == 8080
    assert resolve_port("81", container) == 81 and resolve_port(82, container) == 82
    with pytest.raises(ValueError, match="named port"):
        resolve_port("grpc", container)
