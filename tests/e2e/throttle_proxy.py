"""A slow registry: a proxy on 127.0.0.1 that passes requests to a test registry and sends blob
bodies at a fixed rate, counting what it served, so a test can cancel a pull mid-layer and see
the download stop.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class ProxyStats:
    blob_gets: Counter[str] = field(default_factory=Counter)
    bytes_sent: int = 0
    open_bodies: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sent(self) -> int:
        with self.lock:
            return self.bytes_sent


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    upstream: str
    rate: int
    corrupt: bool
    stats: ProxyStats
    client: httpx.Client


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._relay(send_body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._relay(send_body=True)

    def _relay(self, send_body: bool) -> None:
        server = self.server
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}}
        is_blob = "/blobs/" in self.path
        if is_blob and send_body:
            with server.stats.lock:
                server.stats.blob_gets[self.path.rsplit("/", 1)[-1]] += 1
        request = server.client.build_request(self.command, server.upstream + self.path, headers=headers)
        response = server.client.send(request, stream=True)
        try:
            self.send_response(response.status_code)
            for key, value in response.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            self.end_headers()
            if not send_body:
                return
            if is_blob:
                with server.stats.lock:
                    server.stats.open_bodies += 1
            try:
                self._send_slowly(response, throttle=is_blob)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            finally:
                if is_blob:
                    with server.stats.lock:
                        server.stats.open_bodies -= 1
        finally:
            response.close()

    def _send_slowly(self, response: httpx.Response, throttle: bool) -> None:
        chunk = 64 * 1024
        started = time.monotonic()
        sent = 0
        pending = b""
        for data in response.iter_raw(chunk):
            if throttle and self.server.corrupt:
                # the last byte of every blob flipped: the registry lies about its content
                data, pending = pending + data[:-1], data[-1:]
            self.wfile.write(data)
            sent += len(data)
            with self.server.stats.lock:
                self.server.stats.bytes_sent += len(data)
            if throttle:
                ahead = sent / self.server.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        if pending:
            self.wfile.write(bytes([pending[0] ^ 0xFF]))


@contextlib.contextmanager
def throttled(upstream: str, rate: int, corrupt: bool = False) -> Iterator[tuple[str, ProxyStats]]:
    """`upstream` ("http://127.0.0.1:PORT") behind a proxy sending blobs at `rate` bytes/s
    (with their last byte flipped if `corrupt`); yields its "127.0.0.1:PORT" and counters."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.upstream = upstream
    server.rate = rate
    server.corrupt = corrupt
    server.stats = ProxyStats()
    server.client = httpx.Client(timeout=60.0)
    thread = threading.Thread(target=server.serve_forever, name="throttle-proxy", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", server.stats
    finally:
        server.shutdown()
        server.server_close()
        server.client.close()
