"""A process run in a container: ExecSync and streaming Exec share this one implementation.

    <runtime> exec --detach --pid-file P --process SPEC [--console-socket S]
              [--internal-pid-file I] <container>

The runtime starts the command and exits. The command (under gVisor, its host-side waiter)
is adopted by the daemon, a child subreaper, which learns its exit status through a pidfd:
no monitor process per exec, and no wait for what the command leaves in the background.
Without a terminal the command's stdio are pipes of ours handed through; with one, the
runtime sends the pty master over the console socket (as it does to conmon and to
containerd's shim) and we read, write and resize it ourselves.

Killing is one function, for a timeout, a cancelled request and a closed stream alike: the
command's process group, and under gVisor the process inside the sandbox by its internal pid
(on the host the pid is only a waiter).
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import errno
import fcntl
import json
import os
import secrets
import socket
import struct
import termios
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cri_py.errors import Internal
from cri_py.oci import exits
from cri_py.oci.interface import ExecResult
from cri_py.oci.process import run, spawn
from cri_py.oci.stdio import TerminalSize

OUTPUT_CAP = 16 * 1024 * 1024  # ExecSync keeps this much of each stream (CVE-2022-1708)
# a streaming exec reads ahead at most this much before its client takes it
READ_AHEAD = 1 << 20
# how long a timed-out ExecSync waits for the runtime to report the command it started
RUNTIME_START_GRACE = 10.0
# how long a timed-out ExecSync waits for its killed command to be reaped
REAP_TIMEOUT = 10.0
# after the command exited: how long output still buffered may take to arrive
OUTPUT_GRACE = 0.01


@dataclass(frozen=True)
class ExecRuntime:
    """How to run `exec` with one runtime handler."""

    binary: str
    global_args: tuple[str, ...]
    # the runtime runs processes in a kernel of its own (gVisor) and names them by internal pid
    sandbox_pids: bool
    # spec, pid and console socket files live here while an exec runs
    scratch: Path


class ExecProcess:
    """One exec'd command; implements `StdioSession` (oci/stdio.py)."""

    def __init__(self, how: ExecRuntime, cid: str, files: list[Path], internal_pid_file: Path | None) -> None:
        self._how = how
        self._cid = cid
        self._files = files
        self._internal_pid_file = internal_pid_file
        self._loop = asyncio.get_running_loop()
        self.pid = 0  # the command (gVisor: its waiter), once the runtime reported it
        self._proc: asyncio.subprocess.Process | None = None
        self._stdin_fd = -1
        self._tty_fd = -1
        self._outputs: dict[int, int] = {}  # fd -> stream number (1 stdout, 2 stderr)
        self._chunks: collections.deque[tuple[int, bytes]] = collections.deque()
        self._buffered = 0
        self._ready = asyncio.Event()
        self._paused = False
        self._exit: asyncio.Task[int | None] | None = None
        self._closed = False

    # ---- starting --------------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        how: ExecRuntime,
        cid: str,
        process: dict[str, Any],
        *,
        stdin: bool,
        initial_size: TerminalSize | None = None,
    ) -> ExecProcess:
        """Start `process` (its `terminal` decides pipes or a pty); raises Internal if the
        runtime could not start it."""
        if not process.get("args"):
            raise Internal("exec needs a command")
        if not exits.is_child_subreaper():
            # only a subreaper adopts the detached command and learns its exit status
            exits.become_child_subreaper()
        tty = bool(process.get("terminal", False))
        spec = dict(process)
        spec.pop("consoleSize", None)
        if tty and initial_size is not None:
            # the runtime sizes the new pty before the command starts
            spec["consoleSize"] = {"height": initial_size.height, "width": initial_size.width}
        name = f"exec-{cid[:12]}-{secrets.token_hex(6)}"
        spec_file = how.scratch / f"{name}.json"
        pid_file = how.scratch / f"{name}.pid"
        internal = how.scratch / f"{name}.ipid" if how.sandbox_pids else None
        await asyncio.to_thread(_write_spec, how.scratch, spec_file, spec)
        self = cls(how, cid, [spec_file, pid_file, *([internal] if internal else [])], internal)
        try:
            await self._launch(spec_file, pid_file, tty=tty, stdin=stdin)
        except BaseException:
            await self.close()
            raise
        return self

    async def _launch(self, spec_file: Path, pid_file: Path, *, tty: bool, stdin: bool) -> None:
        argv = [self._how.binary, *self._how.global_args, "exec", "--detach", "--pid-file", str(pid_file)]
        if self._internal_pid_file is not None:
            argv += ["--internal-pid-file", str(self._internal_pid_file)]
        stdin_r = -1
        if stdin:
            stdin_r, self._stdin_fd = os.pipe()
            os.set_blocking(self._stdin_fd, False)
        # with a tty the command's stdio is the pty; the runtime's own output is its errors
        pipes = [_Pipe()] if tty else [_Pipe(), _Pipe()]
        console = _ConsoleSocket(self._how.scratch) if tty else None
        if console is not None:
            argv += ["--console-socket", console.path_for_runtime]
        argv += ["--process", str(spec_file), self._cid]
        received: asyncio.Future[int] | None = None
        try:
            try:
                # a session of its own: the command inherits the process group, which a kill
                # takes whole, as conmon does
                self._proc = await spawn(
                    argv,
                    stdin=stdin_r if stdin else asyncio.subprocess.DEVNULL,
                    stdout=pipes[0].write_fd,
                    stderr=pipes[-1].write_fd,
                )
            finally:
                # the runtime (and the command) hold their copies
                for fd in (stdin_r, *(p.write_fd for p in pipes)):
                    if fd >= 0:
                        os.close(fd)
            if console is not None:
                received = asyncio.ensure_future(console.receive_fd())
            # the runtime sends the terminal and writes the pid file before it exits
            if await self._proc.wait() != 0:
                # the command never ran: what the pipes hold is the runtime's error
                said = b"".join([await p.read_available(0.5) for p in pipes])
                text = said.decode(errors="replace").strip()
                raise Internal(f"exec failed: {text or f'exit status {self._proc.returncode}'}")
            if received is not None:
                self._tty_fd = await asyncio.wait_for(received, 5)
                self._add_output(self._tty_fd, 1)
            else:
                for pipe, stream in ((pipes[0], 1), (pipes[1], 2)):
                    self._add_output(pipe.read_fd, stream)
                    pipe.handed_over = True
            self.pid = int(await asyncio.to_thread(pid_file.read_text))
        except BaseException:
            if self._proc is not None and self._proc.returncode in (None, 0):
                # ended while the runtime was still starting the command (let it finish,
                # briefly), or after it had started it (while the terminal or the pid file was
                # awaited): the command is known by its pid file and killed too
                self.pid = await _started_pid(self._proc, pid_file)
                _kill_group(self._proc.pid, self.pid)
                if self.pid > 0:  # and reaped, so no zombie of it stays in the container
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            asyncio.shield(exits.wait_child_status(self.pid)), REAP_TIMEOUT
                        )
            raise
        finally:
            if received is not None and not received.done():
                received.cancel()
                await asyncio.gather(received, return_exceptions=True)
            if console is not None:
                console.close()
            for p in pipes:
                # one the outputs took is theirs to close: a fast command's end of output may
                # have closed it already (and its number may belong to another file by now)
                if not p.handed_over:
                    p.close_read()
        self._exit = asyncio.ensure_future(exits.wait_child_status(self.pid))

    # ---- output ----------------------------------------------------------------------

    def _add_output(self, fd: int, stream: int) -> None:
        os.set_blocking(fd, False)
        self._outputs[fd] = stream
        self._loop.add_reader(fd, self._readable, fd)

    def _readable(self, fd: int) -> None:
        while fd in self._outputs and not self._paused:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.EIO:  # a pty master whose last slave closed
                    raise
                data = b""
            if not data:
                self._end_output(fd)
                return
            self._chunks.append((self._outputs[fd], data))
            self._buffered += len(data)
            self._ready.set()
            if self._buffered > READ_AHEAD:
                self._pause(True)

    def _pause(self, paused: bool) -> None:
        if paused == self._paused:
            return
        self._paused = paused
        for fd in self._outputs:
            if paused:
                self._loop.remove_reader(fd)
            else:
                self._loop.add_reader(fd, self._readable, fd)

    def _end_output(self, fd: int) -> None:
        del self._outputs[fd]
        self._loop.remove_reader(fd)
        if fd != self._tty_fd:
            os.close(fd)
        self._ready.set()

    async def read_output(self) -> tuple[int, bytes]:
        while not self._chunks:
            if not self._outputs:
                return 0, b""
            self._ready.clear()
            await self._ready.wait()
        stream, data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._buffered <= READ_AHEAD // 2:
            self._pause(False)
        return stream, data

    def drain(self) -> None:
        """Read what the pipes hold right now (the command has exited)."""
        self._pause(False)
        for fd in list(self._outputs):
            self._readable(fd)

    def take_buffered(self) -> list[tuple[int, bytes]]:
        """Everything read and not yet taken."""
        items = list(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return items

    # ---- input and terminal ----------------------------------------------------------

    async def write_stdin(self, data: bytes) -> None:
        fd = self._tty_fd if self._tty_fd >= 0 else self._stdin_fd
        if fd < 0:
            return
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                await _ready(fd, writable=True)

    async def close_stdin(self) -> None:
        # a terminal has no end of input (the user types ^D): only a pipe is closed
        if self._stdin_fd >= 0:
            os.close(self._stdin_fd)
            self._stdin_fd = -1

    async def resize(self, size: TerminalSize) -> None:
        if self._tty_fd >= 0:
            fcntl.ioctl(self._tty_fd, termios.TIOCSWINSZ, struct.pack("HHHH", size.height, size.width, 0, 0))

    # ---- end -------------------------------------------------------------------------

    async def wait(self) -> int | None:
        """The command's exit code (128+n for a signal)."""
        assert self._exit is not None
        return await asyncio.shield(self._exit)

    @property
    def exited(self) -> bool:
        return self._exit is not None and self._exit.done()

    async def kill(self) -> None:
        """The command, what it started in its group, and under gVisor the sandbox's process.
        Only numbers that cannot have been reused are signalled: the runtime while it runs,
        the command while it is unreaped."""
        runtime = self._proc.pid if self._proc is not None and self._proc.returncode is None else 0
        _kill_group(runtime, 0 if self.exited else self.pid)
        if self._internal_pid_file is not None:
            try:
                internal = int((await asyncio.to_thread(self._internal_pid_file.read_text)).strip())
            except (OSError, ValueError):
                return
            with contextlib.suppress(Exception):
                await run(
                    [
                        self._how.binary,
                        *self._how.global_args,
                        "kill",
                        "--pid",
                        str(internal),
                        self._cid,
                        "9",
                    ],
                    time_limit=10,
                )

    async def close(self) -> None:
        """Kill the command if it still runs, then release every fd and file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._exit is not None and not self._exit.done():
                await asyncio.shield(self.kill())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._exit), 5)
        finally:
            if self._exit is not None and not self._exit.done():
                self._exit.cancel()
            for fd in list(self._outputs):
                self._end_output(fd)
            for fd in (self._stdin_fd, self._tty_fd):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._stdin_fd = self._tty_fd = -1
            for f in self._files:
                f.unlink(missing_ok=True)


async def exec_sync(how: ExecRuntime, cid: str, process: dict[str, Any], limit_s: int) -> ExecResult:
    """ExecSync: run to the end (or `limit_s`), keeping the first 16 MiB of each stream (the
    rest is read and dropped, so the command never blocks on a full pipe)."""
    kept = {1: bytearray(), 2: bytearray()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s if limit_s > 0 else None
    try:
        # the time runs from the start: a loaded node may take a while to start the command
        async with asyncio.timeout_at(deadline):
            session = await ExecProcess.start(how, cid, process, stdin=False)
    except TimeoutError:
        return ExecResult(-1, b"", b"command timed out", timed_out=True)

    def keep(stream: int, data: bytes) -> None:
        buf = kept[stream]
        buf += data[: max(0, OUTPUT_CAP - len(buf))]

    async def collect() -> None:
        while (item := await session.read_output())[0] != 0:
            keep(*item)

    collector = asyncio.ensure_future(collect())
    try:
        try:
            async with asyncio.timeout_at(deadline):
                code = await session.wait()
        except TimeoutError:
            await session.kill()
            # answer only once the command is gone: reaped, not even a zombie that a `ps`
            # or `pgrep` in the container would still list
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.wait(), REAP_TIMEOUT)
            return ExecResult(-1, b"", b"command timed out", timed_out=True)
        # the command is gone; a background child holding its pipes open must not hold the
        # reply: take what is buffered and stop reading
        session.drain()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(collector), OUTPUT_GRACE)
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
        for item in session.take_buffered():
            keep(*item)
        return ExecResult(code if code is not None else -1, bytes(kept[1]), bytes(kept[2]))
    finally:
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
        await session.close()


def _write_spec(scratch: Path, spec_file: Path, spec: dict[str, Any]) -> None:
    scratch.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(json.dumps(spec))


class _Pipe:
    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.handed_over = False  # the session's outputs own the read end now

    async def read_available(self, grace: float) -> bytes:
        """What the writer left (it has exited); waits up to `grace` for it to arrive."""
        os.set_blocking(self.read_fd, False)
        chunks: list[bytes] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while True:
            try:
                chunk = os.read(self.read_fd, 65536)
            except BlockingIOError:
                if loop.time() >= deadline or chunks:
                    break
                await asyncio.sleep(0.01)
                continue
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def close_read(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.read_fd)


class _ConsoleSocket:
    """Where the runtime sends the pty master. Reached through an fd of its directory, so
    that a long scratch path still fits into sun_path (108 bytes)."""

    def __init__(self, scratch: Path) -> None:
        name = f"exec-console-{secrets.token_hex(6)}.sock"
        self._dir_fd = os.open(scratch, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._sock.bind(f"/proc/self/fd/{self._dir_fd}/{name}")
        self._sock.listen(1)
        self._sock.setblocking(False)
        self._file = scratch / name
        self.path_for_runtime = f"/proc/{os.getpid()}/fd/{self._dir_fd}/{name}"

    async def receive_fd(self) -> int:
        loop = asyncio.get_running_loop()
        conn, _ = await loop.sock_accept(self._sock)
        with conn:
            conn.setblocking(False)
            fds = array.array("i")
            while True:
                try:
                    _, ancdata, _, _ = conn.recvmsg(1024, socket.CMSG_LEN(fds.itemsize))
                    break
                except BlockingIOError:
                    await _ready(conn.fileno(), writable=False)
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
        if not fds:
            raise Internal("the runtime sent no terminal")
        for extra in fds[1:]:
            os.close(extra)
        return fds[0]

    def close(self) -> None:
        self._sock.close()
        os.close(self._dir_fd)
        self._file.unlink(missing_ok=True)


async def _ready(fd: int, *, writable: bool) -> None:
    """Until `fd` can be read (or written) without blocking."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if writable:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def _started_pid(proc: asyncio.subprocess.Process, pid_file: Path) -> int:
    """The pid a still-running `exec --detach` writes once it started the command; 0 if none."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(RUNTIME_START_GRACE):
            await asyncio.shield(proc.wait())
    try:
        return int(await asyncio.to_thread(pid_file.read_text))
    except (OSError, ValueError):
        return 0


def _kill_group(runtime_pid: int, pid: int = 0) -> None:
    """Kill an exec'd command and what it started: its process group (the runtime may have
    given it one of its own) and the runtime's."""
    groups = {runtime_pid} if runtime_pid > 0 else set()
    if pid > 0:
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(pid))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, 9)
