"""Exec, Attach and PortForward through the daemon: RPC -> URL -> our SPDY/WebSocket client."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_py.api import api_pb2
from tests.e2e.kubectl_shim import KubectlShim, find_kubectl
from tests.e2e.registry_fixtures import TestRegistry, registry  # noqa: F401
from tests.e2e.stream_client import (
    HandshakeError,
    SpdyPortForwardClient,
    open_command,
    run_command,
    ws_port_forward,
)
from tests.e2e.streaming_env import wait_until
from tests.e2e.test_pod_support import (
    container_config,
    create_container,
    exec_sync,
    pod_config,
    pull,
    run_pod,
    start,
    wait_state,
)

KUBECTL = find_kubectl()

HTTPD = "mkdir -p /www && echo hello-pf > /www/index.html && exec httpd -f -p 8080 -h /www"


@pytest.fixture
def cri(cri_factory: Any, registry: TestRegistry) -> Any:  # noqa: F811
    return cri_factory(registry.daemon_overrides())


def running_container(cri: Any, registry: TestRegistry, command: list[str], **kwargs: Any) -> tuple[str, str]:  # noqa: F811
    pull(cri, registry.busybox)
    pcfg = pod_config()
    pod_id = run_pod(cri, pcfg)
    cid = create_container(cri, pod_id, pcfg, container_config(registry.busybox, command, **kwargs))
    start(cri, cid)
    wait_state(cri, cid, api_pb2.CONTAINER_RUNNING)
    return pod_id, cid


def exec_url(cri: Any, cid: str, cmd: list[str], *, stdin: bool = False, tty: bool = False) -> str:
    try:
        resp = cri.runtime.Exec(
            api_pb2.ExecRequest(container_id=cid, cmd=cmd, stdin=stdin, stdout=True, stderr=not tty, tty=tty),
            timeout=10,
        )
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNAVAILABLE and "streaming server" in (e.details() or ""):
            pytest.skip("the daemon does not start its streaming server yet")
        raise
    url: str = resp.url
    assert url.startswith("http://127.0.0.1:") and "/exec/" in url
    return url


def test_exec_through_the_daemon(cri: Any, registry: TestRegistry) -> None:  # noqa: F811
    _, cid = running_container(cri, registry, ["sleep", "3600"])

    async def main() -> None:
        for transport in ("spdy", "websocket"):
            res = await run_command(exec_url(cri, cid, ["cat"], stdin=True), transport, stdin=b"hi\n")
            assert (res.stdout, res.exit_code) == (b"hi\n", 0), transport
            res = await run_command(exec_url(cri, cid, ["sh", "-c", "echo e >&2; exit 3"]), transport)
            assert (res.stderr, res.exit_code, res.error) == (b"e\n", 3, None), transport
            session = await open_command(
                exec_url(cri, cid, ["sh"], stdin=True, tty=True),
                transport,
                stdin=True,
                tty=True,
            )
            await session.resize(70, 20)
            await session.write_stdin(b"stty size\n")
            await session.read_stdout_until(b"20 70")
            await session.write_stdin(b"exit 0\n")
            assert (await session.finish()).exit_code == 0
        reused = exec_url(cri, cid, ["true"])
        assert (await run_command(reused)).exit_code == 0
        with pytest.raises(HandshakeError) as e:
            await run_command(reused)
        assert e.value.status == 404

    asyncio.run(main())


def test_exec_rpc_validation(cri: Any, registry: TestRegistry) -> None:  # noqa: F811
    _, cid = running_container(cri, registry, ["sleep", "3600"])
    exec_url(cri, cid, ["true"])  # skips if the streaming server is not wired
    bad = [
        (api_pb2.ExecRequest(cmd=["true"], stdout=True), grpc.StatusCode.INVALID_ARGUMENT),
        (api_pb2.ExecRequest(container_id=cid, cmd=["true"]), grpc.StatusCode.INVALID_ARGUMENT),
        (
            api_pb2.ExecRequest(container_id=cid, cmd=["true"], tty=True, stderr=True),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (api_pb2.ExecRequest(container_id="0" * 64, cmd=["true"], stdout=True), grpc.StatusCode.NOT_FOUND),
    ]
    for request, code in bad:
        with pytest.raises(grpc.RpcError) as err:
            cri.runtime.Exec(request, timeout=10)
        assert err.value.code() == code, request


def test_attach_through_the_daemon(cri: Any, registry: TestRegistry) -> None:  # noqa: F811
    _, cid = running_container(
        cri, registry, ["sh", "-c", "read line; echo got:$line; sleep 3600"], stdin=True, stdin_once=True
    )
    exec_url(cri, cid, ["true"])  # skips if the streaming server is not wired
    url = cri.runtime.Attach(
        api_pb2.AttachRequest(container_id=cid, stdin=True, stdout=True, stderr=True), timeout=10
    ).url
    assert "/attach/" in url

    async def main() -> None:
        session = await open_command(url, "spdy", stdin=True)
        await session.write_stdin(b"ping\n")
        await session.read_stdout_until(b"got:ping\n")
        await session.abort()

    asyncio.run(main())


def test_port_forward_through_the_daemon(cri: Any, registry: TestRegistry, tmp_path: Path) -> None:  # noqa: F811
    pod_id, cid = running_container(cri, registry, ["sh", "-c", HTTPD])
    exec_url(cri, cid, ["true"])  # skips if the streaming server is not wired
    wait_until(
        lambda: exec_sync(cri, cid, ["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"]).exit_code == 0
    )

    def pf_url() -> str:
        resp = cri.runtime.PortForward(
            api_pb2.PortForwardRequest(pod_sandbox_id=pod_id, port=[8080]), timeout=10
        )
        return str(resp.url)

    get = b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n"

    async def main() -> None:
        client = await SpdyPortForwardClient.connect(pf_url())
        (a, ea), (b, eb) = await asyncio.gather(client.request(8080, get), client.request(8080, get))
        await client.close()
        assert ea == eb == b""
        assert a.startswith(b"HTTP/1.") and a.endswith(b"hello-pf\n") and b == a
        [(c, ec)] = await ws_port_forward(pf_url(), [8080], [get])
        assert ec == b"" and c.endswith(b"hello-pf\n")

    asyncio.run(main())


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_exec_and_port_forward_through_the_daemon(
    cri: Any,
    registry: TestRegistry,  # noqa: F811
    tmp_path: Path,
) -> None:
    """kubectl -> (API server stand-in doing the kubelet's part: the CRI RPC) -> our streaming server."""
    pod_id, cid = running_container(cri, registry, ["sh", "-c", HTTPD])
    exec_url(cri, cid, ["true"])  # skips if the streaming server is not wired
    wait_until(
        lambda: exec_sync(cri, cid, ["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"]).exit_code == 0
    )

    def make_url(kind: str, query: dict[str, list[str]]) -> str:
        def flag(name: str) -> bool:
            return query.get(name, ["false"])[0] == "true"

        if kind == "exec":
            tty = flag("tty")
            request = api_pb2.ExecRequest(
                container_id=cid,
                cmd=query["command"],
                tty=tty,
                stdin=flag("stdin"),
                stdout=flag("stdout"),
                stderr=flag("stderr") and not tty,
            )
            return str(cri.runtime.Exec(request, timeout=10).url)
        assert kind == "portforward"
        return str(cri.runtime.PortForward(api_pb2.PortForwardRequest(pod_sandbox_id=pod_id), timeout=10).url)

    async def main() -> None:
        shim = KubectlShim(make_url)
        await shim.start()
        config = tmp_path / "kubeconfig"
        config.write_text(shim.kubeconfig())
        env = {**os.environ, "KUBECONFIG": str(config)}
        try:
            proc = await asyncio.create_subprocess_exec(
                KUBECTL, "exec", "-i", "p", "--", "sh", "-c", "cat; exit 3",
                env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(b"hi\n"), 30)
            assert (proc.returncode, out) == (3, b"hi\n"), err
            pf = await asyncio.create_subprocess_exec(
                KUBECTL, "port-forward", "p", ":8080",
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                assert pf.stdout is not None
                line = (await asyncio.wait_for(pf.stdout.readline(), 20)).decode()
                match = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> 8080", line)
                assert match, line
                reader, writer = await asyncio.open_connection("127.0.0.1", int(match.group(1)))
                writer.write(b"GET / HTTP/1.0\r\n\r\n")
                body = await asyncio.wait_for(reader.read(), 10)
                writer.close()
                assert body.endswith(b"hello-pf\n"), body
            finally:
                pf.kill()
                await pf.wait()
        finally:
            await shim.stop()

    asyncio.run(main())
