"""The stdio of a process a shim runs, through FIFOs in a directory of ours.

A shim v2 opens the FIFOs named in Create/Exec for the process's stdin, stdout and stderr.
With no conmon between, the daemon does conmon's part: it reads stdout/stderr and writes the
container's CRI log (`<RFC 3339 time> <stream> <F|P> <text>`, P for a line that continues),
hands the same output to attached clients, and writes what they send to stdin.

Each FIFO is opened read-write, so that neither side blocks on open and a read end never sees
EOF while the other side reopens (a daemon restart: the output written meanwhile waits in the
pipe, and the process blocks once it is full, until the daemon is back).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cri_py.oci.stdio import TerminalSize

STDOUT = 1
STDERR = 2
CHUNK = 65536
# kept for a client that attaches late, as conmon keeps none: only what arrives while attached
QUEUE_CHUNKS = 1024


@dataclass(frozen=True)
class IOSettings:
    log_path: str
    tty: bool
    stdin: bool
    stdin_once: bool
    log_size_max: int = -1


def make_fifos(directory: Path, settings: IOSettings) -> dict[str, str]:
    """The FIFOs a Create or Exec names (stdin, stdout, stderr: "" = none)."""
    directory.mkdir(parents=True, exist_ok=True)
    names = {"stdin": settings.stdin, "stdout": True, "stderr": not settings.tty}
    paths: dict[str, str] = {}
    for name, wanted in names.items():
        path = directory / name
        if wanted and not path.exists():
            os.mkfifo(path, 0o600)
        paths[name] = str(path) if wanted else ""
    (directory / "settings.json").write_text(json.dumps(asdict(settings)))
    return paths


def read_settings(directory: Path) -> IOSettings | None:
    try:
        return IOSettings(**json.loads((directory / "settings.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _timestamp() -> bytes:
    now = time.time_ns()
    seconds, nanos = divmod(now, 1_000_000_000)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z").encode()


class CriLog:
    """The container's log file in the CRI format, reopened on request (kubelet rotates it)."""

    def __init__(self, path: str, size_max: int) -> None:
        self.path = path
        self.size_max = size_max
        self._file = self._open()

    def _open(self) -> int:
        if not self.path:
            return -1
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def write(self, stream: int, data: bytes, partial: bool) -> None:
        if self._file < 0:
            return
        name = b"stdout" if stream == STDOUT else b"stderr"
        line = b" ".join((_timestamp(), name, b"P" if partial else b"F", data)) + b"\n"
        if self.size_max >= 0 and os.fstat(self._file).st_size + len(line) > self.size_max:
            os.ftruncate(self._file, 0)  # as conmon does with --log-size-max
        os.write(self._file, line)

    def reopen(self) -> None:
        self.close()
        self._file = self._open()

    def close(self) -> None:
        if self._file >= 0:
            with contextlib.suppress(OSError):
                os.close(self._file)
            self._file = -1


class ProcessIO:
    """The daemon's ends of one process's FIFOs: output to a log and to subscribers."""

    def __init__(self, directory: Path, settings: IOSettings) -> None:
        self.directory = directory
        self.settings = settings
        self.log = CriLog(settings.log_path, settings.log_size_max)
        self._loop = asyncio.get_running_loop()
        self._outputs: dict[int, int] = {}
        self._subscribers: list[asyncio.Queue[tuple[int, bytes]]] = []
        self._ended = asyncio.Event()
        self.stdin_fd = -1
        for name, stream in (("stdout", STDOUT), ("stderr", STDERR)):
            path = directory / name
            if path.exists():
                fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
                self._outputs[fd] = stream
                self._loop.add_reader(fd, self._readable, fd)
        if settings.stdin and (directory / "stdin").exists():
            self.stdin_fd = os.open(directory / "stdin", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)

    def _readable(self, fd: int) -> None:
        stream = self._outputs[fd]
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._output(stream, data)

    def _output(self, stream: int, data: bytes) -> None:
        *lines, rest = data.split(b"\n")
        for line in lines:
            self.log.write(stream, line, partial=False)
        if rest:
            # a line still open: logged now (P), as conmon does, so nothing waits for a newline
            self.log.write(stream, rest, partial=True)
        for queue in self._subscribers:
            if queue.qsize() < QUEUE_CHUNKS:
                queue.put_nowait((stream, data))

    def subscribe(self) -> asyncio.Queue[tuple[int, bytes]]:
        queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        if self._ended.is_set():
            queue.put_nowait((0, b""))
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[tuple[int, bytes]]) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(queue)

    async def write_stdin(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self.stdin_fd >= 0:
            try:
                written = os.write(self.stdin_fd, view)
            except BlockingIOError:
                await asyncio.sleep(0.01)
                continue
            view = view[written:]

    def close_stdin(self) -> None:
        if self.stdin_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.stdin_fd)
            self.stdin_fd = -1

    async def finish(self) -> None:
        """The process exited: take what is left in the pipes, then end every subscriber."""
        await asyncio.sleep(0.05)  # output written just before the exit may still be in flight
        for fd in list(self._outputs):
            while True:
                try:
                    data = os.read(fd, CHUNK)
                except OSError:
                    break
                if not data:
                    break
                self._output(self._outputs[fd], data)
        self.stop()
        self._ended.set()
        for queue in self._subscribers:
            queue.put_nowait((0, b""))

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def stop(self) -> None:
        for fd in list(self._outputs):
            self._loop.remove_reader(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
        self._outputs.clear()
        self.close_stdin()
        self.log.close()


class Attached:
    """A `StdioSession` on a running process's IO (attach, or an exec's own)."""

    def __init__(self, io: ProcessIO, *, stdin: bool, resize: object = None) -> None:
        self._io = io
        self._queue = io.subscribe()
        self._stdin = stdin and io.settings.stdin
        self._resize = resize
        self._closed = False

    async def write_stdin(self, data: bytes) -> None:
        if self._stdin:
            await self._io.write_stdin(data)

    async def close_stdin(self) -> None:
        # closing the process's stdin is for a client of a stdin_once process only
        if self._stdin and self._io.settings.stdin_once:
            self._io.close_stdin()

    async def read_output(self) -> tuple[int, bytes]:
        return await self._queue.get()

    async def resize(self, size: TerminalSize) -> None:
        if callable(self._resize):
            await self._resize(size)

    async def wait(self) -> int | None:
        return None

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._io.unsubscribe(self._queue)
