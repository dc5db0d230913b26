"""Port-forward into a network namespace the test made, over SPDY and WebSocket."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from cri_py.streaming.backend import PortForwardTarget
from cri_py.streaming.requests import PortForwardRequest
from tests.e2e.stream_client import SpdyPortForwardClient, ws_port_forward
from tests.e2e.streaming_env import (
    netns_dial_threads,
    netns_with_server,
    open_fds,
    run,
    start_server,
    threads_in_foreign_netns,
    wait_until,
)

# Two echo servers inside the namespace: port 7001 upper-cases, 7002 prefixes; both on
# 127.0.0.1 only, so a connection from the host's namespace could not reach them.
SERVER = """
import socket, threading
def serve(port, fn):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(16)
    def handle(c):
        data = b""
        while chunk := c.recv(65536):
            data += chunk
            if data.endswith(b"\\n"):
                break
        c.sendall(fn(data)); c.close()
    while True:
        c, _ = s.accept(); threading.Thread(target=handle, args=(c,), daemon=True).start()
threading.Thread(target=serve, args=(7001, bytes.upper), daemon=True).start()
threading.Thread(target=serve, args=(7002, lambda d: b"seven:" + d), daemon=True).start()
import time; time.sleep(0.2); print("ready", flush=True); time.sleep(3600)
"""


@pytest.fixture(scope="module")
def netns() -> Iterator[PortForwardTarget]:
    with netns_with_server(SERVER) as (target, _):
        yield target


def test_spdy_two_concurrent_connections_and_a_closed_port(netns: PortForwardTarget, tmp_path: Path) -> None:
    async def main() -> None:
        server = await start_server(tmp_path)
        fds = open_fds()
        try:
            client = await SpdyPortForwardClient.connect(server.url_for(PortForwardRequest(netns, "pod")))
            big = b"a" * 200_000 + b"\n"
            (r1, e1), (r2, e2) = await asyncio.gather(client.request(7001, big), client.request(7002, b"x\n"))
            assert (r1, e1) == (big.upper(), b"")
            assert (r2, e2) == (b"seven:x\n", b"")
            # Later connections on the same SPDY connection get new request ids.
            assert await client.request(7001, b"again\n") == (b"AGAIN\n", b"")
            data, err = await client.request(7003, b"nobody\n")
            assert data == b"" and b"7003" in err
            await client.close()
        finally:
            await server.stop()
        assert open_fds() <= fds
        assert threads_in_foreign_netns() == [] and netns_dial_threads() == []

    run(main())


def test_websocket_two_ports(netns: PortForwardTarget, tmp_path: Path) -> None:
    async def main() -> None:
        server = await start_server(tmp_path)
        try:
            url = server.url_for(PortForwardRequest(netns, "pod"))
            results = await ws_port_forward(url, [7001, 7002], [b"ws\n", b"y\n"])
            assert results == [(b"WS\n", b""), (b"seven:y\n", b"")]
        finally:
            await server.stop()

    run(main())


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_client_vanishing_mid_connection_closes_the_pod_side(
    netns: PortForwardTarget, tmp_path: Path, transport: str
) -> None:
    async def main() -> None:
        server = await start_server(tmp_path)
        try:
            warm_up = await SpdyPortForwardClient.connect(server.url_for(PortForwardRequest(netns, "pod")))
            await warm_up.close()
            before = open_fds()
            url = server.url_for(PortForwardRequest(netns, "pod"))
            if transport == "spdy":
                client = await SpdyPortForwardClient.connect(url)
                _, data = await client.open(7001)
                await data.write(b"no newline, the pod side keeps waiting")
                await asyncio.to_thread(wait_until, lambda: open_fds() > before)
                await client.abort()
            else:
                ws = await connect(
                    url.replace("http://", "ws://") + "?port=7001",
                    subprotocols=[Subprotocol("v4.channel.k8s.io")],
                )
                await ws.send(b"\x00no newline")
                await asyncio.to_thread(wait_until, lambda: open_fds() > before + 1)
                ws.transport.abort()
            await asyncio.to_thread(wait_until, lambda: open_fds() <= before)
        finally:
            await server.stop()

    run(main())
