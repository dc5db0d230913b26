"""Just enough of a Kubernetes API server for `kubectl exec/attach/port-forward` to reach us.

kubectl (client-go) is the reference client of the streaming protocols. It asks the API
server for the pod, then upgrades a request on `.../pods/<name>/exec?command=...`. Like the
kubelet, the shim turns the query into a cached streaming request and relays the raw
connection to the streaming server's token URL, so kubectl's SPDY/WebSocket bytes reach
our server unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

REPO = Path(__file__).resolve().parents[2]


def find_kubectl() -> str | None:
    """The kubectl that hack/k8s/build made (the version the node suite uses), else one on PATH."""
    try:
        bin_dir = subprocess.run(
            [str(REPO / "hack" / "k8s" / "build"), "--bin-dir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        bin_dir = ""
    built = Path(bin_dir) / "kubectl" if bin_dir else None
    if built is not None and built.is_file():
        return str(built)
    return shutil.which("kubectl")


# (kind, query) -> streaming URL; kind is exec, attach or portforward.
UrlFactory = Callable[[str, dict[str, list[str]]], str]


def pod_json(namespace: str, name: str) -> bytes:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": "0000"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running"},
    }
    return json.dumps(pod).encode()


DISCOVERY = {
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "pods",
                "singularName": "pod",
                "namespaced": True,
                "kind": "Pod",
                "verbs": ["get", "list"],
            },
            {
                "name": "pods/exec",
                "singularName": "",
                "namespaced": True,
                "kind": "PodExecOptions",
                "verbs": ["create", "get"],
            },
            {
                "name": "pods/attach",
                "singularName": "",
                "namespaced": True,
                "kind": "PodAttachOptions",
                "verbs": ["create", "get"],
            },
            {
                "name": "pods/portforward",
                "singularName": "",
                "namespaced": True,
                "kind": "PodPortForwardOptions",
                "verbs": ["create", "get"],
            },
        ],
    },
}


class KubectlShim:
    def __init__(self, make_url: UrlFactory) -> None:
        self._make_url = make_url
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.seen: list[str] = []
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def kubeconfig(self) -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "shim", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
                "users": [{"name": "shim", "user": {}}],
                "contexts": [
                    {"name": "shim", "context": {"cluster": "shim", "user": "shim", "namespace": "default"}}
                ],
                "current-context": "shim",
            }
        )

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            try:
                while await self._serve_one(reader, writer):
                    pass
            finally:
                writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode().split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        url = urlsplit(target)
        self.seen.append(f"{method} {url.path}")
        parts = url.path.strip("/").split("/")
        length = 0
        for line in header_lines:
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        if length:
            await reader.readexactly(length)
        if url.path.rstrip("/") in DISCOVERY:
            self._reply(writer, 200, json.dumps(DISCOVERY[url.path.rstrip("/")]).encode())
            return True
        # /api/v1/namespaces/<ns>/pods/<name>[/<sub>]
        if len(parts) >= 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            if len(parts) == 6:
                self._reply(writer, 200, pod_json(parts[3], parts[5]))
                return True
            kind = parts[6]
            if kind in ("exec", "attach", "portforward"):
                stream_url = urlsplit(self._make_url(kind, parse_qs(url.query)))
                await self._relay(head, stream_url.port or 80, stream_url.path, target, reader, writer)
                return False
        self._reply(writer, 404, b'{"kind":"Status","status":"Failure","code":404}')
        return True

    def _reply(self, writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    async def _relay(
        self,
        head: bytes,
        port: int,
        path: str,
        target: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        # The kubelet keeps the query (port-forward over WebSocket names ports there).
        query = urlsplit(target).query
        new_target = path + (f"?{query}" if query else "")
        up_writer.write(head.replace(target.encode(), new_target.encode(), 1))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError):
                if dst.can_write_eof():
                    dst.write_eof()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            up_writer.close()
