"""The ttrpc client against a small server of the test's own, and the CRI log the daemon
writes for a shim's processes."""

from __future__ import annotations

import asyncio
import os
import re
import struct
from pathlib import Path

import pytest

from cri_py.api import shimv2_pb2 as pb
from cri_py.errors import Internal, NotFound
from cri_py.shim.io import STDERR, STDOUT, CriLog, IOSettings, ProcessIO, make_fifos
from cri_py.shim.task import SERVICE, TaskClient
from cri_py.shim.ttrpc import Client, ConnectionLost, TtrpcError

HEADER = struct.Struct(">IIBB")


async def _serve(path: Path, seen: list[tuple[int, str, str]]) -> asyncio.Server:
    """Answers Start with pid 42 (after Wait's answer, to show calls are concurrent), Wait
    with status 7, Delete with NotFound, and hangs up on Shutdown."""
    release = asyncio.Event()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def answer(stream: int, request: pb.TtrpcRequest) -> None:
            response = pb.TtrpcResponse()
            if request.method == "Wait":
                response.payload = pb.WaitResponse(exit_status=7).SerializeToString()
                release.set()
            elif request.method == "Start":
                await release.wait()
                response.payload = pb.StartResponse(pid=42).SerializeToString()
            elif request.method == "Delete":
                response.status.code, response.status.message = 5, "no such task"
            elif request.method == "Shutdown":
                writer.close()
                return
            body = response.SerializeToString()
            writer.write(HEADER.pack(len(body), stream, 2, 0) + body)

        while True:
            try:
                length, stream, kind, _ = HEADER.unpack(await reader.readexactly(HEADER.size))
            except asyncio.IncompleteReadError:
                return
            request = pb.TtrpcRequest.FromString(await reader.readexactly(length))
            seen.append((stream, request.service, request.method))
            assert kind == 1
            asyncio.ensure_future(answer(stream, request))

    return await asyncio.start_unix_server(client, path=str(path))


def test_calls_share_a_connection_and_errors_keep_their_code(tmp_path: Path) -> None:
    async def scenario() -> None:
        seen: list[tuple[int, str, str]] = []
        server = await _serve(tmp_path / "shim.sock", seen)
        client = await Client.connect(str(tmp_path / "shim.sock"))
        start = asyncio.ensure_future(
            client.call(SERVICE, "Start", pb.StartRequest(id="c"), pb.StartResponse())
        )
        await asyncio.sleep(0.01)
        waited = await client.call(SERVICE, "Wait", pb.WaitRequest(id="c"), pb.WaitResponse())
        assert waited.exit_status == 7 and (await start).pid == 42
        # one stream per call, odd ids counting up, all on the Task service
        assert seen == [(1, SERVICE, "Start"), (3, SERVICE, "Wait")]
        with pytest.raises(TtrpcError) as err:
            await client.call(SERVICE, "Delete", pb.DeleteRequest(id="c"), pb.DeleteResponse())
        assert err.value.code == 5
        with pytest.raises(ConnectionLost):
            await client.call(SERVICE, "Shutdown", pb.ShutdownRequest(id="c"), pb.Empty())
        await client.close()
        # the Task client maps codes to the daemon's errors and its shutdown tolerates hang-ups
        tasks = TaskClient(f"unix://{tmp_path / 'shim.sock'}")
        with pytest.raises(NotFound):
            await tasks.delete("c")
        await tasks.shutdown("c")
        await tasks.close()
        server.close()
        with pytest.raises(ConnectionLost):
            await Client.connect(str(tmp_path / "none.sock"))
        assert issubclass(NotFound, Exception) and not issubclass(NotFound, Internal)

    asyncio.run(scenario())


def test_shutdown_returns_once_the_shim_has_let_go_of_its_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shim answers Shutdown and exits a moment later: shutdown() waits for that exit (the
    connection closing), and gives up after SHUTDOWN_WAIT with a shim that stays."""
    from cri_py.shim import task

    async def scenario() -> None:
        linger = {"delay": 0.3}
        closed: list[float] = []

        async def shim(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            length, stream, _kind, _ = HEADER.unpack(await reader.readexactly(HEADER.size))
            await reader.readexactly(length)
            body = pb.TtrpcResponse().SerializeToString()
            writer.write(HEADER.pack(len(body), stream, 2, 0) + body)
            await writer.drain()
            await asyncio.sleep(linger["delay"])
            closed.append(asyncio.get_running_loop().time())
            writer.close()

        server = await asyncio.start_unix_server(shim, path=str(tmp_path / "shim.sock"))
        tasks = TaskClient(f"unix://{tmp_path / 'shim.sock'}")
        assert await tasks.shutdown("pod") is True
        assert closed, "shutdown() returned before the shim closed its connection"
        await tasks.close()
        monkeypatch.setattr(task, "SHUTDOWN_WAIT", 0.2)
        linger["delay"] = 5.0
        tasks = TaskClient(f"unix://{tmp_path / 'shim.sock'}")
        started = asyncio.get_running_loop().time()
        assert await tasks.shutdown("pod") is False
        assert asyncio.get_running_loop().time() - started < 2.0
        await tasks.close()
        server.close()

    asyncio.run(scenario())


def test_the_cri_log_marks_partial_lines_and_follows_rotation(tmp_path: Path) -> None:
    log_path = tmp_path / "c.log"
    log = CriLog(str(log_path), -1)
    log.write(STDOUT, b"whole", partial=False)
    log.write(STDERR, b"half", partial=True)
    log_path.rename(tmp_path / "c.log.1")
    log.reopen()
    log.write(STDOUT, b"after", partial=False)
    log.close()
    pattern = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) ([FP]) (.*)$")
    old = [pattern.match(line).groups() for line in (tmp_path / "c.log.1").read_text().splitlines()]  # type: ignore[union-attr]
    assert old == [("stdout", "F", "whole"), ("stderr", "P", "half")]
    assert log_path.read_text().endswith(" stdout F after\n")


def test_a_process_output_reaches_the_log_and_an_attached_client(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = IOSettings(str(tmp_path / "c.log"), tty=False, stdin=True, stdin_once=True)
        fifos = make_fifos(tmp_path / "io", settings)
        io = ProcessIO(tmp_path / "io", settings)
        queue = io.subscribe()
        # what the shim does with the FIFOs: the process writes its output, reads its input
        out = os.open(fifos["stdout"], os.O_WRONLY)
        # a line cut in two by the reads: logged at once as partial (P), then its end
        for chunk in (b"line one\nline t", b"wo\n"):
            os.write(out, chunk)
            assert await asyncio.wait_for(queue.get(), 5) == (STDOUT, chunk)
        await io.write_stdin(b"typed\n")
        stdin = os.open(fifos["stdin"], os.O_RDONLY | os.O_NONBLOCK)
        assert os.read(stdin, 100) == b"typed\n"
        os.close(out)
        os.close(stdin)
        await io.finish()
        assert await queue.get() == (0, b"")
        lines = [line.split(" ", 1)[1] for line in (tmp_path / "c.log").read_text().splitlines()]
        assert lines == ["stdout F line one", "stdout P line t", "stdout F wo"]

    asyncio.run(scenario())
