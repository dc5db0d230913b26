"""conmon, the monitor each container runs under (protocol-facts §1).

conmon stays the parent of the container: it holds the stdio, writes the CRI log, records
the exit status in an exit file and serves the attach socket, so the daemon can restart
freely. This module spawns it for a create and recognises it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
from pathlib import Path

from cri_py.errors import DeadlineExceeded, Internal
from cri_py.oci import exits

CREATE_TIMEOUT = 240.0


async def create(args: list[str], bundle: Path) -> tuple[int, int]:
    """Run conmon with `args` for a create; (container pid, conmon pid)."""
    sync_ours, sync_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    start_ours, start_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = await spawn(args, bundle, sync_theirs.fileno(), start_theirs.fileno())
        sync_theirs.close()
        start_theirs.close()
        start_ours.sendall(b"\0")
        try:
            line = await asyncio.wait_for(_read_line(sync_ours), CREATE_TIMEOUT)
        except BaseException as exc:
            # a runtime that hangs (or a create given up on): conmon's monitor waits for it in
            # a session of its own (it forks and calls setsid first), with the runtime and
            # whatever that started; all of it goes
            _kill_session(bundle, args[args.index("-c") + 1] if "-c" in args else "")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            if isinstance(exc, TimeoutError):
                raise DeadlineExceeded(
                    f"the runtime's create did not answer in {CREATE_TIMEOUT:g} s and was killed"
                ) from None
            raise
        # the first conmon process exits right after forking its monitor
        await proc.wait()
    finally:
        for s in (sync_ours, sync_theirs, start_ours, start_theirs):
            s.close()
    try:
        reply = json.loads(line)
    except ValueError as exc:
        raise Internal(f"conmon sent no create result ({line!r})") from exc
    pid = int(reply.get("pid", -1))
    if pid <= 0:
        message = str(reply.get("message", "")).strip() or "unknown error"
        raise Internal(f"container create failed: {with_hint(message)}")
    conmon_pid = int((bundle / "conmon-pidfile").read_text().strip() or 0)
    return pid, conmon_pid


async def spawn(args: list[str], cwd: Path, sync_fd: int, start_fd: int) -> asyncio.subprocess.Process:
    """conmon with its sync and start pipes, named by fd number in its environment. No stdio:
    the daemonized conmon would hold a pipe open forever; errors come through the sync pipe."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "_OCI_SYNCPIPE": str(sync_fd),
        "_OCI_STARTPIPE": str(start_fd),
    }
    return await asyncio.create_subprocess_exec(
        *args,
        cwd=str(cwd),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        pass_fds=(sync_fd, start_fd),
        start_new_session=True,
    )


def _kill_session(bundle: Path, cid: str) -> None:
    """SIGKILL the session of the monitor named by the bundle's conmon pidfile, if it is
    still this container's conmon."""
    try:
        pid = int((bundle / "conmon-pidfile").read_text().strip() or 0)
    except (OSError, ValueError):
        return
    if pid > 1 and cid and is_conmon(pid, cid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def is_conmon(pid: int, cid: str = "") -> bool:
    """Is `pid` still the conmon of this container (pids get reused across restarts)?"""
    if not exits.process_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"conmon") and (not cid or cid.encode() in argv)


async def reopen_log(bundle: Path) -> None:
    """Ask conmon to reopen the container's log file (through its ctl FIFO)."""
    ctl = bundle / "ctl"

    def write() -> None:
        # O_NONBLOCK: a FIFO with no reader (conmon gone) must not hang us
        fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, b"2 0 0\n")
        finally:
            os.close(fd)

    try:
        await asyncio.to_thread(write)
    except OSError as exc:
        raise Internal(f"cannot reach the container monitor: {exc}") from exc


def with_hint(message: str) -> str:
    # runsc (2022) probes /proc/sys/net/core/rmem_default, which newer kernels show in every
    # network namespace, and so takes each pod's for the host's
    if "cannot run with network enabled in root network namespace" in message:
        return message + " (this kernel needs runsc's runtime_args: [--network=host])"
    return message


async def _read_line(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    buf = b""
    while b"\n" not in buf:
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n", 1)[0]


def level(name: str) -> str:
    """conmon's name for a log level."""
    name = name.lower()
    return name if name in ("error", "warn", "info", "debug", "trace") else "warn"
