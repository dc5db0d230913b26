"""The few lines of HTTP/1.1 the daemon's read-only endpoints speak (Prometheus metrics, the
container inspect API): one GET or HEAD per connection, a head of at most 8 KiB that must
arrive within 10 s, answers with Content-Length and `Connection: close`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

HEAD_LIMIT = 8192
HEAD_TIMEOUT = 10.0

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str] | None:
    """(method, path without the query) of the request line; None for a head that is too
    long, cut short or late."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
    except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, TimeoutError, ValueError):
        return None
    method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
    return method, rest.split(" ", 1)[0].split("?", 1)[0]


async def reply(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    length: int | None = None,
    extra: bytes = b"",
) -> None:
    head = (
        (
            f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n"
        ).encode()
        + extra
        + b"\r\n"
    )
    writer.write(head + body)
    await writer.drain()


async def serve_one(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    answer: Callable[[asyncio.StreamWriter, str, str], Awaitable[None]],
) -> None:
    """Read one request, let `answer(writer, method, path)` reply, close the connection; a
    client that goes away mid-way is no error."""
    try:
        request = await read_request(reader)
        if request is None:
            await reply(writer, 400, b"bad request\n")
        else:
            await answer(writer, *request)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
