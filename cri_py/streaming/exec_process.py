"""A streaming exec: `<runtime> exec` in the foreground, as CRI-O does it (not through conmon).

Without a TTY the runtime gets pipes and copies them to the process. With a TTY the runtime
needs a terminal of its own: it makes the container's pty, relays between the two, and copies
the size over on SIGWINCH. The kernel sends SIGWINCH only to the foreground process group of
a *controlling* terminal, and Python's subprocess cannot set one without `preexec_fn`, so
the runtime is started through util-linux `setsid --ctty`, which makes our pty slave its
controlling terminal. Resizing is then TIOCSWINSZ on our master.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import struct
import termios
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cri_py.errors import Internal
from cri_py.streaming.backend import ExecTarget, TerminalSize
from cri_py.streaming.fdio import FdIO

# After the process was killed, how long the runtime gets to notice and exit.
RUNTIME_EXIT_GRACE = 2.0


def _set_winsize(fd: int, size: TerminalSize) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size.height, size.width, 0, 0))


def _write_spec(scratch_dir: Path, spec_file: Path, spec: dict[str, Any]) -> None:
    scratch_dir.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(json.dumps(spec))


class ExecProcess:
    """Implements `StdioSession` for one exec."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        files: list[Path],
        pid_file: Path,
        tty: FdIO | None,
    ) -> None:
        self._proc = proc
        self._files = files
        self._pid_file = pid_file
        self._tty = tty
        self._output: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self._readers: list[asyncio.Task[None]] = []
        self._open_outputs = 0
        self._closed = False
        if tty is not None:
            self._start_reader(1, tty.read)
        else:
            assert proc.stdout is not None and proc.stderr is not None
            out, err = proc.stdout, proc.stderr
            self._start_reader(1, lambda: out.read(65536))
            self._start_reader(2, lambda: err.read(65536))

    @classmethod
    async def start(
        cls,
        target: ExecTarget,
        cmd: list[str],
        *,
        tty: bool,
        stdin: bool,
        initial_size: TerminalSize | None,
        scratch_dir: Path,
    ) -> ExecProcess:
        if not cmd:
            raise Internal("exec needs a command")
        name = f"exec-{target.container_id[:12]}-{secrets.token_hex(6)}"
        spec_file = scratch_dir / f"{name}.json"
        pid_file = scratch_dir / f"{name}.pid"
        spec = dict(target.process_spec)
        spec["args"] = list(cmd)
        spec["terminal"] = tty
        spec.pop("consoleSize", None)
        if tty and initial_size is not None:
            # runc sizes the new pty itself before the process starts; its own copy of our
            # terminal's size (on start-up and SIGWINCH) comes only after the process runs.
            spec["consoleSize"] = {"height": initial_size.height, "width": initial_size.width}
        await asyncio.to_thread(_write_spec, scratch_dir, spec_file, spec)
        files = [spec_file, pid_file]
        argv = [
            target.runtime_path,
            *target.runtime_args,
            "exec",
            "--pid-file",
            str(pid_file),
            "--process",
            str(spec_file),
        ]
        try:
            if not tty:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    target.container_id,
                    stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                return cls(proc, files, pid_file, None)
            setsid = shutil.which("setsid")
            if setsid is None:
                raise Internal("util-linux setsid is needed for exec with a TTY")
            master, slave = os.openpty()
            try:
                if initial_size is not None:
                    _set_winsize(master, initial_size)
                proc = await asyncio.create_subprocess_exec(
                    setsid,
                    "--ctty",
                    "--wait",
                    # `terminal` in the process spec asks for the pty (runsc has no --tty flag)
                    *argv,
                    target.container_id,
                    stdin=slave,
                    stdout=slave,
                    stderr=slave,
                )
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)
            return cls(proc, files, pid_file, FdIO(master))
        except OSError as e:
            for f in files:
                f.unlink(missing_ok=True)
            raise Internal(f"cannot start {target.runtime_path} exec: {e}") from e

    def _start_reader(self, fd: int, read: Callable[[], Awaitable[bytes]]) -> None:
        self._open_outputs += 1

        async def pump() -> None:
            try:
                while data := await read():
                    self._output.put_nowait((fd, data))
            except OSError:
                pass
            finally:
                self._open_outputs -= 1
                if self._open_outputs == 0:
                    self._output.put_nowait((0, b""))

        self._readers.append(asyncio.create_task(pump()))

    async def write_stdin(self, data: bytes) -> None:
        if self._tty is not None:
            await self._tty.write(data)
            return
        if self._proc.stdin is None:
            return
        self._proc.stdin.write(data)
        await self._proc.stdin.drain()

    async def close_stdin(self) -> None:
        # A terminal has no end of input (the user types ^D); only pipes are closed.
        if self._tty is None and self._proc.stdin is not None and not self._proc.stdin.is_closing():
            self._proc.stdin.close()
            with contextlib.suppress(ConnectionError):
                await self._proc.stdin.wait_closed()

    async def read_output(self) -> tuple[int, bytes]:
        item = await self._output.get()
        if item[0] == 0:
            self._output.put_nowait(item)
        return item

    async def resize(self, size: TerminalSize) -> None:
        if self._tty is not None and not self._tty.closed:
            _set_winsize(self._tty.fd, size)

    async def wait(self) -> int | None:
        return await self._proc.wait()

    def _kill_process(self) -> None:
        # Killing only the runtime would orphan the process inside the container. runc makes
        # every exec'd process a session and group leader, so its pid names the group that
        # holds its children too. The pid is still the runtime's unreaped child (or a group
        # with live members): the number cannot have been reused.
        with contextlib.suppress(OSError, ValueError):
            pid = int(self._pid_file.read_text().strip())
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._proc.returncode is None:
                self._kill_process()
                try:
                    await asyncio.wait_for(asyncio.shield(self._proc.wait()), RUNTIME_EXIT_GRACE)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        self._proc.kill()
                    await self._proc.wait()
                    # The process may have been started after our first look at the pid file.
                    self._kill_process()
        finally:
            for task in self._readers:
                task.cancel()
            await asyncio.gather(*self._readers, return_exceptions=True)
            if self._tty is not None:
                self._tty.close()
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            for f in self._files:
                f.unlink(missing_ok=True)
