"""The Prometheus text endpoint: a small HTTP/1.1 server on the daemon's event loop.

On the loop (not prometheus_client's own server thread) because the state gauges read the
stores, which only the loop thread may touch. GET /metrics answers the text format; anything
else gets 404 or 405. One request per connection; a request head is at most 8 KiB and must
arrive within 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cri_py.metrics.prometheus import DaemonMetrics

log = logging.getLogger("cri_py.metrics")

HEAD_LIMIT = 8192
HEAD_TIMEOUT = 10.0


class MetricsEndpoint:
    def __init__(self, metrics: DaemonMetrics, address: str, port: int) -> None:
        self.metrics = metrics
        self.address = address
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.address, self.port, limit=HEAD_LIMIT)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("serving metrics", extra={"url": f"http://{self.address}:{self.port}/metrics"})

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.metrics.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                await self._reply(writer, 400, b"bad request\n")
                return
            method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if path != "/metrics":
                await self._reply(writer, 404, b"not found: try /metrics\n")
            elif method not in ("GET", "HEAD"):
                await self._reply(writer, 405, b"method not allowed\n", extra=b"Allow: GET, HEAD\r\n")
            else:
                body = generate_latest(self.metrics.registry)
                await self._reply(
                    writer, 200, body if method == "GET" else b"", CONTENT_TYPE_LATEST, len(body)
                )
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    @staticmethod
    async def _reply(
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        length: int | None = None,
        extra: bytes = b"",
    ) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}[status]
        head = (
            (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n"
            ).encode()
            + extra
            + b"\r\n"
        )
        writer.write(head + body)
        await writer.drain()
