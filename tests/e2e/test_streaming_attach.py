"""Attach to containers run under conmon (started by hand as CRI-O starts them)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cri_py.streaming.requests import AttachRequest
from tests.e2e.stream_client import open_command
from tests.e2e.streaming_env import conmon_container, open_fds, run, runc_start, start_server, wait_until


@pytest.mark.parametrize(("transport", "protocols"), [("spdy", None), ("websocket", ("v5.channel.k8s.io",))])
def test_attach_echoes_stdin_and_ends_with_the_container(
    tmp_path: Path, transport: str, protocols: tuple[str, ...] | None
) -> None:
    with conmon_container(tmp_path, ["sh", "-c", "echo ready; cat; echo bye >&2"], tty=False) as ctr:

        async def main() -> None:
            server = await start_server(tmp_path / "scratch")
            try:
                req = AttachRequest(ctr.attach, tty=False, stdin=True, stdout=True, stderr=True)
                session = await open_command(server.url_for(req), transport, stdin=True, protocols=protocols)  # type: ignore[arg-type]
                await asyncio.to_thread(runc_start, tmp_path / "crunc-root", ctr.id)
                await session.read_stdout_until(b"ready\n")
                await session.write_stdin(b"hello attach\n")
                await session.read_stdout_until(b"hello attach\n")
                await session.close_stdin()
                res = await session.finish()
                assert res.stdout == b"ready\nhello attach\n"
                assert res.stderr == b"bye\n"
                assert (res.exit_code, res.error) == (0, None)
            finally:
                await server.stop()

        run(main())


def test_attach_tty_resize_through_conmon(tmp_path: Path) -> None:
    with conmon_container(tmp_path, ["sh"], tty=True) as ctr:

        async def main() -> None:
            server = await start_server(tmp_path / "scratch")
            try:
                await asyncio.to_thread(runc_start, tmp_path / "crunc-root", ctr.id)
                req = AttachRequest(ctr.attach, tty=True, stdin=True, stdout=True, stderr=False)
                session = await open_command(server.url_for(req), "spdy", stdin=True, tty=True)
                await session.resize(91, 37)
                await session.write_stdin(b"stty size\n")
                await session.read_stdout_until(b"37 91")
                await session.write_stdin(b"exit\n")
                res = await session.finish()
                assert (res.exit_code, res.error) == (0, None)
            finally:
                await server.stop()

        run(main())


def test_attach_client_vanishing_releases_the_socket(tmp_path: Path) -> None:
    with conmon_container(tmp_path, ["sh", "-c", "echo ready; exec sleep 3600"], tty=False) as ctr:

        async def main() -> None:
            server = await start_server(tmp_path / "scratch")
            try:
                await asyncio.to_thread(runc_start, tmp_path / "crunc-root", ctr.id)
                before = open_fds()
                req = AttachRequest(ctr.attach, tty=False, stdin=False, stdout=True, stderr=True)
                session = await open_command(server.url_for(req), "websocket")
                await asyncio.to_thread(
                    wait_until, lambda: open_fds() >= before + 2
                )  # client + server + conmon socket
                await session.abort()
                await asyncio.to_thread(wait_until, lambda: open_fds() <= before)
            finally:
                await server.stop()

        run(main())
