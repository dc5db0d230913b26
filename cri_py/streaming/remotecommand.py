"""The exec/attach session: relays between negotiated channels and a process's stdio.

Transport-neutral: SPDY streams and WebSocket channels both arrive as `CommandChannels`.
The end of a session follows what client-go waits for: every output channel ends first,
then the error channel carries the status (v4+: a Kubernetes Status as JSON) and ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from cri_py.errors import CriError
from cri_py.streaming.backend import StdioSession, TerminalSize
from cri_py.streaming.channels import CommandChannels, ResizeReader

log = logging.getLogger(__name__)

# How long an exec with a TTY waits for the client's first resize, so that the process
# starts with the client's terminal size instead of 0x0 (client-go sends it at once).
FIRST_RESIZE_WAIT = 1.0

SessionOpener = Callable[[TerminalSize | None], Awaitable[StdioSession]]


def exit_status(version: int, exit_code: int) -> bytes:
    """What the error channel carries for a finished process (empty = success)."""
    if exit_code == 0:
        return b'{"status":"Success"}' if version >= 4 else b""
    message = f"command terminated with non-zero exit code: exit status {exit_code}"
    if version < 4:
        return message.encode()
    status = {
        "status": "Failure",
        "message": message,
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
    }
    return json.dumps(status, separators=(",", ":")).encode()


def error_status(version: int, message: str) -> bytes:
    if version < 4:
        return message.encode()
    status: dict[str, Any] = {
        "status": "Failure",
        "message": f"Internal error occurred: {message}",
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }
    return json.dumps(status, separators=(",", ":")).encode()


async def _finish(channels: CommandChannels, status: bytes) -> None:
    for out in (channels.stdout, channels.stderr):
        if out is not None:
            with contextlib.suppress(ConnectionError):
                await out.close()
    with contextlib.suppress(ConnectionError):
        if status:
            await channels.error.write(status)
        await channels.error.close()


async def _pump_output(session: StdioSession, channels: CommandChannels) -> None:
    targets = {1: channels.stdout, 2: channels.stderr}
    while True:
        fd, data = await session.read_output()
        if fd == 0:
            return
        out = targets.get(fd)
        if out is None:
            continue
        try:
            await out.write(data)
        except ConnectionError:
            # Keep draining so the process never blocks on a full pipe.
            targets[fd] = None


async def _pump_stdin(session: StdioSession, channels: CommandChannels) -> None:
    assert channels.stdin is not None
    while True:
        data = await channels.stdin.read()
        if not data:
            break
        try:
            await session.write_stdin(data)
        except (ConnectionError, OSError):
            return
    with contextlib.suppress(ConnectionError, OSError):
        await session.close_stdin()


async def _pump_resize(session: StdioSession, sizes: ResizeReader) -> None:
    while (size := await sizes.next()) is not None:
        try:
            await session.resize(size)
        except (OSError, CriError) as e:
            log.debug("resize failed: %s", e)


async def serve(
    channels: CommandChannels,
    open_session: SessionOpener,
    *,
    wait_first_resize: bool,
    end_with_stdin: bool = False,
) -> None:
    """Run one exec or attach session to the end (or until cancelled: then clean up)."""
    sizes = ResizeReader(channels.resize) if channels.resize is not None else None
    initial: TerminalSize | None = None
    if sizes is not None and wait_first_resize:
        with contextlib.suppress(TimeoutError):
            initial = await asyncio.wait_for(sizes.next(), FIRST_RESIZE_WAIT)
    try:
        session = await open_session(initial)
    except (CriError, OSError) as e:
        log.info("streaming session failed to start: %s", e)
        await _finish(channels, error_status(channels.version, str(e)))
        return

    tasks: list[asyncio.Task[None]] = []
    try:
        if initial is not None:
            await session.resize(initial)
        output = asyncio.create_task(_pump_output(session, channels))
        tasks.append(output)
        stdin_task = None
        if channels.stdin is not None:
            stdin_task = asyncio.create_task(_pump_stdin(session, channels))
            tasks.append(stdin_task)
        else:
            await session.close_stdin()
        if sizes is not None:
            tasks.append(asyncio.create_task(_pump_resize(session, sizes)))

        if end_with_stdin and stdin_task is not None:
            await asyncio.wait([output, stdin_task], return_when=asyncio.FIRST_COMPLETED)
            exit_code = None
        else:
            exit_code = await session.wait()
            await output
        status = exit_status(channels.version, exit_code) if exit_code is not None else b""
        if exit_code is None and channels.version >= 4:
            status = exit_status(channels.version, 0)
        await _finish(channels, status)
    except (CriError, OSError) as e:
        log.info("streaming session failed: %s", e)
        await _finish(channels, error_status(channels.version, str(e)))
    finally:
        for task in tasks:
            task.cancel()
        await session.close()
        await asyncio.gather(*tasks, return_exceptions=True)
