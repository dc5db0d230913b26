"""Streaming exec against a real runc container, over SPDY and WebSocket (no daemon needed)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cri_py.streaming.requests import ExecRequest
from tests.e2e.stream_client import HandshakeError, open_command, run_command
from tests.e2e.streaming_env import (
    RUNSC,
    RuncContainer,
    open_fds,
    run,
    runc_container,
    start_server,
    wait_until,
)

TRANSPORTS = [
    ("spdy", None),
    ("websocket", ("v5.channel.k8s.io",)),
    ("websocket", ("v4.channel.k8s.io",)),
    ("websocket", ("v4.base64.channel.k8s.io",)),
]
IDS = ["spdy", "ws-v5", "ws-v4", "ws-v4-base64"]


@pytest.fixture(scope="module")
def ctr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuncContainer]:
    with runc_container(tmp_path_factory.mktemp("exec")) as c:
        yield c


def exec_request(
    ctr: RuncContainer, cmd: list[str], *, tty: bool = False, stdin: bool = False
) -> ExecRequest:
    return ExecRequest(ctr.exec_target(), tuple(cmd), tty=tty, stdin=stdin, stdout=True, stderr=not tty)


@pytest.mark.parametrize(("transport", "protocols"), TRANSPORTS, ids=IDS)
def test_exec_exit_codes_and_separate_streams(
    ctr: RuncContainer, tmp_path: Path, transport: str, protocols: tuple[str, ...] | None
) -> None:
    async def main() -> None:
        server = await start_server(tmp_path)
        try:
            ok = await run_command(
                server.url_for(exec_request(ctr, ["sh", "-c", "echo out; echo err >&2"])),
                transport,  # type: ignore[arg-type]
                protocols=protocols,
            )
            assert (ok.exit_code, ok.error) == (0, None)
            assert ok.stdout == b"out\n"
            assert ok.stderr == b"err\n"
            failed = await run_command(
                server.url_for(exec_request(ctr, ["sh", "-c", "exit 3"])),
                transport,  # type: ignore[arg-type]
                protocols=protocols,
            )
            assert (failed.exit_code, failed.error) == (3, None)
            assert b"NonZeroExitCode" in failed.raw_status
        finally:
            await server.stop()

    run(main())


@pytest.mark.parametrize(("transport", "protocols"), TRANSPORTS, ids=IDS)
def test_exec_stdin_piped_and_closed(
    ctr: RuncContainer, tmp_path: Path, transport: str, protocols: tuple[str, ...] | None
) -> None:
    payload = b"hi\n" + bytes(range(256)) * 600  # larger than one frame
    # Before v5 a WebSocket client cannot close stdin: there the process stops by itself.
    can_close = transport == "spdy" or protocols == ("v5.channel.k8s.io",)
    cmd = ["cat"] if can_close else ["head", "-c", str(len(payload))]

    async def main() -> None:
        server = await start_server(tmp_path)
        try:
            session = await open_command(
                server.url_for(exec_request(ctr, cmd, stdin=True)),
                transport,  # type: ignore[arg-type]
                stdin=True,
                protocols=protocols,
            )
            await session.write_stdin(payload)
            if can_close:
                await session.close_stdin()
            res = await session.finish()
            assert res.exit_code == 0
            assert res.stdout == payload
        finally:
            await server.stop()

    run(main())


@pytest.mark.parametrize(("transport", "protocols"), TRANSPORTS[:2], ids=IDS[:2])
def test_exec_tty_and_resize(
    ctr: RuncContainer, tmp_path: Path, transport: str, protocols: tuple[str, ...] | None
) -> None:
    async def main() -> None:
        server = await start_server(tmp_path)
        try:
            url = server.url_for(exec_request(ctr, ["sh"], tty=True, stdin=True))
            session = await open_command(url, transport, stdin=True, tty=True, protocols=protocols)  # type: ignore[arg-type]
            await session.resize(77, 33)
            await session.write_stdin(b"stty size; tty\n")
            out = await session.read_stdout_until(b"33 77")
            assert b"/dev/pts/" in await session.read_stdout_until(b"/dev/pts/")
            await session.resize(101, 42)
            await session.write_stdin(b"stty size\n")
            out = await session.read_stdout_until(b"42 101")
            await session.write_stdin(b"exit 5\n")
            res = await session.finish()
            assert res.exit_code == 5, (res, out)
        finally:
            await server.stop()

    run(main())


def test_exec_tty_initial_size(ctr: RuncContainer, tmp_path: Path) -> None:
    """The first resize is applied before the process starts, as kubectl expects."""

    async def main() -> None:
        server = await start_server(tmp_path)
        try:
            url = server.url_for(exec_request(ctr, ["stty", "size"], tty=True))
            session = await open_command(url, "spdy", tty=True)
            await session.resize(120, 40)
            res = await session.finish()
            assert res.exit_code == 0
            assert res.stdout.strip() == b"40 120"
        finally:
            await server.stop()

    run(main())


def test_tokens_single_use_expired_and_unknown(ctr: RuncContainer, tmp_path: Path) -> None:
    async def main() -> None:
        server = await start_server(tmp_path, token_ttl=0.2)
        try:
            url = server.url_for(exec_request(ctr, ["true"]))
            assert (await run_command(url)).exit_code == 0
            with pytest.raises(HandshakeError) as reused:
                await run_command(url)
            assert reused.value.status == 404
            stale = server.url_for(exec_request(ctr, ["true"]))
            await asyncio.sleep(0.3)  # the TTL itself is what is tested
            with pytest.raises(HandshakeError) as expired:
                await run_command(stale, "websocket")
            assert expired.value.status == 404
            with pytest.raises(HandshakeError) as unknown:
                await run_command(server.base_url + "/exec/AAAAAAAA")
            assert unknown.value.status == 404
        finally:
            await server.stop()

    run(main())


@pytest.mark.parametrize(
    ("transport", "tty"),
    [("spdy", False), ("websocket", False), ("spdy", True)],
    ids=["spdy", "ws", "spdy-tty"],
)
def test_client_disconnect_kills_exec(ctr: RuncContainer, tmp_path: Path, transport: str, tty: bool) -> None:
    marker = f"sleep 42{len(transport)}{int(tty)}"

    async def main() -> None:
        fds_before = open_fds()
        server = await start_server(tmp_path)
        try:
            # a child in the background and one in the foreground: neither may survive
            script = f"{marker}1 & echo started; {marker}2; wait"
            url = server.url_for(exec_request(ctr, ["sh", "-c", script], tty=tty))
            session = await open_command(url, transport, tty=tty)  # type: ignore[arg-type]
            await session.read_stdout_until(b"started")
            await asyncio.to_thread(
                wait_until, lambda: sum(p.startswith(marker) for p in ctr.processes()) == 2
            )
            await session.abort()
            await asyncio.to_thread(wait_until, lambda: not any(marker in p for p in ctr.processes()))
            await asyncio.to_thread(wait_until, lambda: not list(ctr.exec_scratch.glob("exec-*")))
        finally:
            await server.stop()
        assert open_fds() <= fds_before

    run(main())


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_exec_large_stdin_is_relayed_with_backpressure(
    ctr: RuncContainer, tmp_path: Path, transport: str
) -> None:
    """More than the per-channel buffer bound (4 MiB) through `cat`: nothing lost, no stall."""

    async def main() -> None:
        server = await start_server(tmp_path)
        try:
            payload = bytes(range(256)) * (48 * 1024)  # 12 MiB
            res = await run_command(
                server.url_for(exec_request(ctr, ["cat"], stdin=True)),
                transport,  # type: ignore[arg-type]
                stdin=payload,
                wait_s=60,
            )
            assert res.exit_code == 0
            assert len(res.stdout) == len(payload) and res.stdout == payload
        finally:
            await server.stop()

    run(main())


def test_exec_under_gvisor(tmp_path: Path) -> None:
    """runsc takes the same `exec --process` (terminal from the spec; it has no --tty flag)."""
    if not Path(RUNSC).exists():
        pytest.skip("runsc is not installed")
    with runc_container(tmp_path, runtime=RUNSC) as gvisor:

        async def main() -> None:
            server = await start_server(tmp_path / "scratch")
            try:
                res = await run_command(
                    server.url_for(
                        exec_request(gvisor, ["sh", "-c", "cat; echo err >&2; exit 4"], stdin=True)
                    ),
                    stdin=b"in\n",
                )
                assert (res.stdout, res.stderr, res.exit_code) == (b"in\n", b"err\n", 4)
                session = await open_command(
                    server.url_for(exec_request(gvisor, ["sh"], tty=True, stdin=True)), stdin=True, tty=True
                )
                await session.resize(90, 30)
                await session.write_stdin(b"stty size; exit 2\n")
                await session.read_stdout_until(b"30 90")
                assert (await session.finish()).exit_code == 2
            finally:
                await server.stop()

        run(main())


def test_a_closed_exec_under_gvisor_ends_its_process_in_the_sandbox(tmp_path: Path) -> None:
    """Under gVisor the host pid of an exec is only a waiter: closing the stream must reach the
    process inside the sandbox too (by its internal pid), or it runs on."""
    if not Path(RUNSC).exists():
        pytest.skip("runsc is not installed")
    with runc_container(tmp_path, runtime=RUNSC) as gvisor:

        def sandbox_commands() -> list[str]:
            out = subprocess.run(
                [RUNSC, "--root", str(gvisor.root), *gvisor.global_args, "ps", gvisor.id],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            return [line.split()[-1] for line in out.splitlines()[1:] if line.split()]

        async def main() -> None:
            server = await start_server(tmp_path / "scratch")
            try:
                url = server.url_for(exec_request(gvisor, ["sh", "-c", "echo started; exec sleep 4242"]))
                session = await open_command(url, "spdy")
                await session.read_stdout_until(b"started")
                # the container's own process sleeps too: one more while the exec runs
                await asyncio.to_thread(wait_until, lambda: sandbox_commands().count("sleep") == 2)
                await session.abort()
                await asyncio.to_thread(wait_until, lambda: sandbox_commands().count("sleep") == 1)
            finally:
                await server.stop()

        run(main())


def test_many_concurrent_sessions_leave_no_fds(ctr: RuncContainer, tmp_path: Path) -> None:
    async def main() -> None:
        server = await start_server(tmp_path)
        try:
            # warm up the loop's lazily created resources before counting fds
            await run_command(server.url_for(exec_request(ctr, ["true"])))
            before = open_fds()
            results = await asyncio.gather(
                *(
                    run_command(
                        server.url_for(exec_request(ctr, ["sh", "-c", f"echo {i}; echo {i} >&2"])),
                        "spdy" if i % 2 else "websocket",
                    )
                    for i in range(16)
                )
            )
            for i, res in enumerate(results):
                assert (res.stdout, res.stderr, res.exit_code) == (f"{i}\n".encode(), f"{i}\n".encode(), 0)
            assert open_fds() <= before
        finally:
            await server.stop()

    run(main())
