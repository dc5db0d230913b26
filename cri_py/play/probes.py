"""Probe checks as kubelet's prober runs them: exec through ExecSync, tcpSocket and httpGet from
the node to the pod's IP. A check returns (success, detail)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from cri_py.api import api_pb2
from cri_py.play.client import CriClient


def resolve_port(port: Any, container: Any) -> int:
    """An int, a numeric string, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for declared in container.ports or []:
        if declared.name == port:
            return int(declared.container_port)
    raise ValueError(f"port {port!r} is not a number nor a named port of the container")


async def exec_check(cri: CriClient, container_id: str, probe: Any) -> tuple[bool, str]:
    timeout = int(probe.timeout_seconds or 1)
    try:
        resp = await cri.runtime.ExecSync(
            api_pb2.ExecSyncRequest(
                container_id=container_id, cmd=list(probe._exec.command or []), timeout=timeout
            ),
            timeout=timeout + 10,
        )
    except grpc.aio.AioRpcError as exc:
        return False, f"exec failed: {exc.code().name}: {exc.details()}"
    if resp.exit_code != 0:
        output = (resp.stdout + resp.stderr).decode(errors="replace").strip()
        return False, f"exit code {resp.exit_code}: {output[:200]}"
    return True, ""


def _reason(exc: BaseException, limit: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out after {limit:g}s"
    return str(exc) or type(exc).__name__


async def tcp_check(host: str, port: int, limit: float) -> tuple[bool, str]:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), limit)
    except (OSError, TimeoutError) as exc:
        return False, f"dial tcp {host}:{port}: {_reason(exc, limit)}"
    writer.close()
    return True, ""


async def http_check(host: str, port: int, action: Any, limit: float) -> tuple[bool, str]:
    """A GET answered with a status from 200 to 399 succeeds (kubelet follows no redirects off-host)."""
    if (action.scheme or "HTTP").upper() != "HTTP":
        return False, "HTTPS probes are not supported by cri-py play"
    path = action.path or "/"
    headers = "".join(f"{h.name}: {h.value}\r\n" for h in action.http_headers or [])
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\n{headers}Connection: close\r\n\r\n"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), limit)
        try:
            writer.write(request.encode())
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), limit)
        finally:
            writer.close()
    except (OSError, TimeoutError) as exc:
        return False, f"GET http://{host}:{port}{path}: {_reason(exc, limit)}"
    parts = line.decode(errors="replace").split()
    code = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
    if 200 <= code < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {code}"


async def run_check(
    cri: CriClient, container_id: str, container: Any, probe: Any, pod_ip: str
) -> tuple[bool, str]:
    timeout = float(probe.timeout_seconds or 1)
    try:
        if probe._exec is not None:
            return await exec_check(cri, container_id, probe)
        if probe.tcp_socket is not None:
            port = resolve_port(probe.tcp_socket.port, container)
            return await tcp_check(probe.tcp_socket.host or pod_ip, port, timeout)
        if probe.http_get is not None:
            port = resolve_port(probe.http_get.port, container)
            return await http_check(probe.http_get.host or pod_ip, port, probe.http_get, timeout)
    except ValueError as exc:
        return False, str(exc)
    return False, "grpc probes are not supported by cri-py play"


async def run_lifecycle_handler(
    cri: CriClient, container_id: str, handler: dict[str, Any], pod_ip: str, ports: list[Any], limit: int
) -> tuple[bool, str]:
    """A postStart/preStop handler in its JSON form (as in the preStopHandler annotation):
    exec through ExecSync, httpGet from the node, sleep. `limit` seconds, 0 for none."""
    if "exec" in handler:
        command = list(handler["exec"].get("command") or [])
        try:
            resp = await cri.runtime.ExecSync(
                api_pb2.ExecSyncRequest(container_id=container_id, cmd=command, timeout=limit)
            )
        except grpc.aio.AioRpcError as exc:
            return False, f"exec {command}: {exc.code().name}: {exc.details()}"
        if resp.exit_code != 0:
            output = (resp.stdout + resp.stderr).decode(errors="replace").strip()
            return False, f"exec {command}: exit code {resp.exit_code}: {output[:200]}"
        return True, ""
    if "httpGet" in handler:
        action = handler["httpGet"]
        port = action.get("port")
        if isinstance(port, str) and not port.isdigit():
            port = next((p.get("containerPort") for p in ports if p.get("name") == port), None)
        if port is None:
            return False, f"httpGet: unknown port {action.get('port')!r}"
        headers = [_Header(h["name"], h["value"]) for h in action.get("httpHeaders") or []]
        get = _HttpGet(action.get("path") or "/", action.get("scheme") or "HTTP", headers)
        return await http_check(action.get("host") or pod_ip, int(port), get, float(limit or 10))
    if "sleep" in handler:
        await asyncio.sleep(int(handler["sleep"].get("seconds") or 0))
        return True, ""
    return False, f"unsupported lifecycle handler {sorted(handler)}"


class _Header:
    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value


class _HttpGet:
    """The attributes http_check reads from a V1HTTPGetAction."""

    def __init__(self, path: str, scheme: str, headers: list[_Header]) -> None:
        self.path = path
        self.scheme = scheme
        self.http_headers = headers
