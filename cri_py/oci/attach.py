"""Attach to a running container through conmon's attach socket and ctl FIFO.

The socket is SOCK_SEQPACKET: each packet from conmon is one pipe-id byte (2 stdout,
3 stderr) and up to 8192 bytes of data; what we send is raw stdin, and shutdown(SHUT_WR)
is stdin EOF. Resize is a line `1 <height> <width>` written to the ctl FIFO.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from pathlib import Path

from cri_py.errors import FailedPrecondition, Internal
from cri_py.oci.stdio import TerminalSize

PACKET = 8193
_PIPE_STDOUT = 2
_PIPE_STDERR = 3


class AttachConnection:
    """Implements `StdioSession` for one attach client."""

    def __init__(self, sock: socket.socket, ctl_fifo: Path, *, tty: bool, stdin: bool) -> None:
        self._sock = sock
        self._ctl_fifo = ctl_fifo
        self._tty = tty
        self._stdin = stdin
        self._loop = asyncio.get_running_loop()
        self._eof = False
        self._stdin_closed = False

    @classmethod
    async def connect(
        cls, attach_socket: Path, ctl_fifo: Path, *, tty: bool, stdin: bool
    ) -> AttachConnection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        # sun_path holds at most 107 bytes; reaching the socket through an fd of its directory
        # keeps any bundle path usable.
        try:
            dir_fd = os.open(attach_socket.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            sock.close()
            raise FailedPrecondition(f"container is not attachable: {e}") from e
        try:
            await asyncio.get_running_loop().sock_connect(
                sock, f"/proc/self/fd/{dir_fd}/{attach_socket.name}"
            )
        except OSError as e:
            sock.close()
            raise FailedPrecondition(f"cannot connect to attach socket {attach_socket}: {e}") from e
        finally:
            os.close(dir_fd)
        return cls(sock, ctl_fifo, tty=tty, stdin=stdin)

    async def write_stdin(self, data: bytes) -> None:
        if not self._stdin or self._stdin_closed:
            return
        await self._loop.sock_sendall(self._sock, data)

    async def close_stdin(self) -> None:
        if self._stdin_closed:
            return
        self._stdin_closed = True
        # Only a client that was given stdin may close the container's stdin.
        if self._stdin:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)

    async def read_output(self) -> tuple[int, bytes]:
        while not self._eof:
            try:
                packet = await self._loop.sock_recv(self._sock, PACKET)
            except OSError:
                packet = b""
            if not packet:
                self._eof = True
                break
            if packet[0] == _PIPE_STDOUT and len(packet) > 1:
                return 1, packet[1:]
            if packet[0] == _PIPE_STDERR and len(packet) > 1:
                return 2, packet[1:]
        return 0, b""

    async def resize(self, size: TerminalSize) -> None:
        if not self._tty:
            return
        await asyncio.to_thread(self._write_ctl, f"1 {size.height} {size.width}\n".encode())

    def _write_ctl(self, line: bytes) -> None:
        # Non-blocking open fails with ENXIO instead of hanging when conmon is gone.
        try:
            fd = os.open(self._ctl_fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return
            raise Internal(f"cannot open ctl fifo {self._ctl_fifo}: {e}") from e
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    async def wait(self) -> int | None:
        return None

    async def close(self) -> None:
        self._sock.close()
