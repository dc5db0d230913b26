"""A registry without images on 127.0.0.1 that records every connection and request.

It answers `/v2/` with 200 and everything else with the registry API's 404, so a pull that
reaches it fails with NOT_FOUND; `connections` proves whether anything connected at all.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from typing import Any


class RecordingRegistry:
    def __init__(self) -> None:
        self.connections = 0
        self.paths: list[str] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, body: bytes) -> None:
                with owner._lock:
                    owner.paths.append(self.path)
                if self.path.rstrip("/") == "/v2":
                    self.send_response(200)
                    body = b"{}"
                else:
                    self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._answer(
                    json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "none here"}]}).encode()
                )

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(b"")

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(
                self, request: socket.socket | tuple[bytes, socket.socket], client: Any
            ) -> bool:
                with owner._lock:
                    owner.connections += 1
                return True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def __enter__(self) -> RecordingRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
