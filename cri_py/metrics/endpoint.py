"""The Prometheus text endpoint: a small HTTP/1.1 server on the daemon's event loop.

On the loop (not prometheus_client's own server thread) because the state gauges read the
stores, which only the loop thread may touch. GET /metrics answers the text format; anything
else gets 404 or 405 (metrics/http.py: one request per connection).
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cri_py.metrics import http
from cri_py.metrics.prometheus import DaemonMetrics

log = logging.getLogger("cri_py.metrics")


class MetricsEndpoint:
    def __init__(self, metrics: DaemonMetrics, address: str, port: int) -> None:
        self.metrics = metrics
        self.address = address
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.address, self.port, limit=http.HEAD_LIMIT)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("serving metrics", extra={"url": f"http://{self.address}:{self.port}/metrics"})

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.metrics.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await http.serve_one(reader, writer, self._answer)

    async def _answer(self, writer: asyncio.StreamWriter, method: str, path: str) -> None:
        if path != "/metrics":
            await http.reply(writer, 404, b"not found: try /metrics\n")
        elif method not in ("GET", "HEAD"):
            await http.reply(writer, 405, b"method not allowed\n", extra=b"Allow: GET, HEAD\r\n")
        else:
            body = generate_latest(self.metrics.registry)
            await http.reply(writer, 200, body if method == "GET" else b"", CONTENT_TYPE_LATEST, len(body))
