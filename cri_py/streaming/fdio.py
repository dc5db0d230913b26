"""Non-blocking reads and writes on a raw fd (a pty master) driven by the event loop."""

from __future__ import annotations

import asyncio
import errno
import os


class FdIO:
    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self._loop = asyncio.get_running_loop()
        self.closed = False

    async def _wait(self, writable: bool) -> None:
        fut: asyncio.Future[None] = self._loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        add, remove = (
            (self._loop.add_writer, self._loop.remove_writer)
            if writable
            else (self._loop.add_reader, self._loop.remove_reader)
        )
        add(self.fd, ready)
        try:
            await fut
        finally:
            if not self.closed:
                remove(self.fd)

    async def read(self, size: int = 65536) -> bytes:
        """Next bytes; b"" at EOF (a pty master reports EIO once the last slave closed)."""
        while not self.closed:
            try:
                return os.read(self.fd, size)
            except BlockingIOError:
                await self._wait(writable=False)
            except OSError as e:
                if e.errno == errno.EIO:
                    return b""
                raise
        return b""

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.closed:
            try:
                n = os.write(self.fd, view)
                view = view[n:]
            except BlockingIOError:
                await self._wait(writable=True)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._loop.remove_reader(self.fd)
            self._loop.remove_writer(self.fd)
            os.close(self.fd)
