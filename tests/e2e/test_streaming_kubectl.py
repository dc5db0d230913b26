"""The reference client: kubectl (client-go, moby/spdystream, gorilla websocket) against our server.

kubectl reaches the streaming server through a tiny stand-in for the API server that
relays the upgraded connection, as the kubelet does in proxy mode.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import struct
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest

from cri_py.streaming.backend import PortForwardTarget
from cri_py.streaming.fdio import FdIO
from cri_py.streaming.requests import AttachRequest, ExecRequest, PortForwardRequest
from cri_py.streaming.server import StreamingServer
from tests.e2e.kubectl_shim import KubectlShim, find_kubectl
from tests.e2e.streaming_env import (
    RuncContainer,
    conmon_container,
    netns_with_server,
    run,
    runc_container,
    runc_start,
    start_server,
)
from tests.e2e.test_streaming_portforward import SERVER as ECHO_SERVERS

KUBECTL = find_kubectl()
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

TRANSPORT_ENV = {
    "spdy": {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false", "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"},
    "websocket": {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "true", "KUBECTL_PORT_FORWARD_WEBSOCKETS": "true"},
}


def flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["false"])[0] in ("true", "1")


@pytest.fixture(scope="module")
def ctr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuncContainer]:
    with runc_container(tmp_path_factory.mktemp("kubectl")) as c:
        yield c


async def kubectl(
    shim: KubectlShim, tmp: Path, transport: str, *args: str, stdin: bytes | None = None
) -> tuple[int, bytes, bytes]:
    config = tmp / "kubeconfig"
    config.write_text(shim.kubeconfig())
    env = {**os.environ, "KUBECONFIG": str(config), **TRANSPORT_ENV[transport]}
    assert KUBECTL is not None
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 30)
    assert proc.returncode is not None
    return proc.returncode, out, err


def exec_shim(server: StreamingServer, ctr: RuncContainer) -> KubectlShim:
    def make_url(kind: str, query: dict[str, list[str]]) -> str:
        assert kind == "exec"
        tty = flag(query, "tty")
        req = ExecRequest(
            ctr.exec_target(),
            tuple(query["command"]),
            tty=tty,
            stdin=flag(query, "stdin"),
            stdout=flag(query, "stdout"),
            stderr=flag(query, "stderr") and not tty,
        )
        return server.url_for(req)

    return KubectlShim(make_url)


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_kubectl_exec(ctr: RuncContainer, tmp_path: Path, transport: str) -> None:
    async def main() -> None:
        server = await start_server(tmp_path)
        shim = exec_shim(server, ctr)
        await shim.start()
        try:
            code, out, err = await kubectl(
                shim, tmp_path, transport, "exec", "p", "--", "sh", "-c", "echo out; echo err >&2; exit 3"
            )
            assert (code, out) == (3, b"out\n"), err
            assert err.startswith(b"err\n"), err
            code, out, err = await kubectl(
                shim, tmp_path, transport, "exec", "-i", "p", "--", "cat", stdin=b"hi\n"
            )
            assert (code, out) == (0, b"hi\n"), err
            code, out, err = await kubectl(shim, tmp_path, transport, "exec", "p", "--", "true")
            assert (code, out, err) == (0, b"", b"")
        finally:
            await shim.stop()
            await server.stop()
        upgrades = [s for s in shim.seen if s.endswith("/exec")]
        assert len(upgrades) == 3, shim.seen  # no fallback from WebSocket to SPDY was needed

    run(main())


def test_kubectl_attach(tmp_path: Path) -> None:
    with conmon_container(tmp_path, ["sh", "-c", "read line; echo got:$line"], tty=False) as c:

        async def main() -> None:
            server = await start_server(tmp_path / "scratch")

            def make_url(kind: str, query: dict[str, list[str]]) -> str:
                assert kind == "attach"
                req = AttachRequest(c.attach, tty=False, stdin=flag(query, "stdin"), stdout=True, stderr=True)
                return server.url_for(req)

            shim = KubectlShim(make_url)
            await shim.start()
            try:
                await asyncio.to_thread(runc_start, tmp_path / "crunc-root", c.id)
                code, out, err = await kubectl(shim, tmp_path, "spdy", "attach", "-i", "p", stdin=b"ping\n")
                assert code == 0, err
                assert out.endswith(b"got:ping\n"), (out, err)
            finally:
                await shim.stop()
                await server.stop()

        run(main())


@pytest.fixture(scope="module")
def echo_netns() -> Iterator[PortForwardTarget]:
    with netns_with_server(ECHO_SERVERS) as (target, _):
        yield target


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_kubectl_port_forward(echo_netns: PortForwardTarget, tmp_path: Path, transport: str) -> None:
    async def main() -> list[str]:
        server = await start_server(tmp_path)
        shim = KubectlShim(lambda kind, query: server.url_for(PortForwardRequest(echo_netns, "pod")))
        await shim.start()
        config = tmp_path / "kubeconfig"
        config.write_text(shim.kubeconfig())
        assert KUBECTL is not None
        proc = await asyncio.create_subprocess_exec(
            KUBECTL,
            "port-forward",
            "p",
            ":7001",
            ":7002",
            env={**os.environ, "KUBECONFIG": str(config), **TRANSPORT_ENV[transport]},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            local: dict[int, int] = {}
            while len(local) < 2:
                line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
                m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
                assert line, "kubectl port-forward ended early"
                if m:
                    local[int(m.group(2))] = int(m.group(1))

            async def talk(port: int, payload: bytes) -> bytes:
                reader, writer = await asyncio.open_connection("127.0.0.1", local[port])
                writer.write(payload)
                await writer.drain()
                data = await asyncio.wait_for(reader.read(), 10)
                writer.close()
                return data

            results = await asyncio.gather(talk(7001, b"one\n"), talk(7002, b"two\n"), talk(7001, b"three\n"))
            assert list(results) == [b"ONE\n", b"seven:two\n", b"THREE\n"]
        finally:
            proc.kill()
            await proc.wait()
            await shim.stop()
            await server.stop()
        return shim.seen

    shim_seen = run(main())
    # Over WebSocket kubectl tunnels SPDY (CRI-O's and containerd's servers refuse that and
    # kubectl falls back to plain SPDY with a POST; we serve the tunnel).
    method = "GET" if transport == "websocket" else "POST"
    assert [s for s in shim_seen if s.endswith("/portforward")] == [
        f"{method} /api/v1/namespaces/default/pods/p/portforward"
    ]


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_kubectl_exec_tty_gets_the_terminal_size(ctr: RuncContainer, tmp_path: Path, transport: str) -> None:
    """kubectl -it on a terminal of 33x77: client-go's resize stream reaches the process."""

    async def main() -> None:
        server = await start_server(tmp_path)
        shim = exec_shim(server, ctr)
        await shim.start()
        config = tmp_path / "kubeconfig"
        config.write_text(shim.kubeconfig())
        master, slave = os.openpty()
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 77, 0, 0))
        terminal = FdIO(master)
        assert KUBECTL is not None
        try:
            proc = await asyncio.create_subprocess_exec(
                KUBECTL,
                "exec",
                "-it",
                "p",
                "--",
                "sh",
                env={**os.environ, "KUBECONFIG": str(config), **TRANSPORT_ENV[transport]},
                stdin=slave,
                stdout=slave,
                stderr=slave,
            )
            os.close(slave)
            slave = -1
            await terminal.write(b"stty size; exit 4\n")
            seen = b""
            async with asyncio.timeout(20):
                while chunk := await terminal.read():
                    seen += chunk
            assert await asyncio.wait_for(proc.wait(), 10) == 4, seen
            assert b"33 77" in seen, seen
        finally:
            if slave >= 0:
                os.close(slave)
            terminal.close()
            await shim.stop()
            await server.stop()

    run(main())
