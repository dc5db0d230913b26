"""Dial localhost:port inside another network namespace without moving the daemon.

A socket belongs to the network namespace it was created in, for its whole life. So only
the `socket()` call has to happen inside the pod's namespace: a dedicated, short-lived thread
enters it with setns(2) (Python 3.11 has no os.setns, hence ctypes), creates the sockets and
exits; the connect itself then runs non-blocking on the event loop. The thread is never a
pool thread (a pool would hand the next task a thread stuck in the pod's namespace), and
the thread's namespace is restored before it ends anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import threading
from pathlib import Path

from cri_py.errors import Internal

CLONE_NEWNET = 0x40000000
CONNECT_TIMEOUT = 10.0

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _sockets_in_netns(netns: Path) -> list[socket.socket]:
    """IPv4 and IPv6 TCP sockets created inside `netns`, from a throwaway thread."""
    result: list[socket.socket] = []
    error: list[BaseException] = []

    def work() -> None:
        own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            target = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(target)
                try:
                    for family in (socket.AF_INET, socket.AF_INET6):
                        with contextlib.suppress(OSError):  # a netns without IPv6
                            result.append(socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC))
                finally:
                    _setns(own)
            finally:
                os.close(target)
        except BaseException as e:
            error.append(e)
        finally:
            os.close(own)

    thread = threading.Thread(target=work, name="netns-dial", daemon=True)
    thread.start()
    thread.join()
    if error:
        for s in result:
            s.close()
        raise Internal(f"cannot enter network namespace {netns}: {error[0]}")
    return result


async def _sockets_surviving_cancel(netns: Path) -> list[socket.socket]:
    """The thread cannot be interrupted: if our caller is cancelled meanwhile (the client left),
    the sockets it still makes are closed when it ends, not leaked."""
    made = asyncio.ensure_future(asyncio.to_thread(_sockets_in_netns, netns))
    try:
        return await asyncio.shield(made)
    except asyncio.CancelledError:

        def close_late(done: asyncio.Future[list[socket.socket]]) -> None:
            if not done.cancelled() and done.exception() is None:
                for sock in done.result():
                    sock.close()

        made.add_done_callback(close_late)
        raise


async def open_connection(netns: Path, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to localhost:port in `netns` (IPv4 first, then IPv6, like CRI-O)."""
    socks = await _sockets_surviving_cancel(netns)
    loop = asyncio.get_running_loop()
    errors: list[str] = []
    try:
        while socks:
            sock = socks.pop(0)
            host = "127.0.0.1" if sock.family == socket.AF_INET else "::1"
            sock.setblocking(False)
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for loses a cancellation that
                # arrives as the connect completes, and the session would outlive its client
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await loop.sock_connect(sock, (host, port))
            except (OSError, TimeoutError) as e:
                sock.close()
                errors.append(f"{host}:{port}: {e or 'timeout'}")
                continue
            except BaseException:  # cancelled: the client went away mid-connect
                sock.close()
                raise
            try:
                return await asyncio.open_connection(sock=sock)
            except BaseException:
                sock.close()
                raise
    finally:
        for other in socks:
            other.close()
    raise Internal(f"failed to connect to localhost:{port} inside namespace {netns}: {'; '.join(errors)}")
