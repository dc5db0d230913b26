"""A runc-compatible OCI runtime binary driven through conmon (protocol-facts §1).

conmon stays the parent of the container: it holds stdio, writes the CRI log, records the
exit status in an exit file and serves the attach socket, so the daemon can restart freely.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cri_py.config.model import RuntimeHandler
from cri_py.errors import Internal, NotFound
from cri_py.oci import exits, features
from cri_py.oci.process import run

CREATE_TIMEOUT = 240.0
EXEC_OUTPUT_CAP = 16 * 1024 * 1024
# how long a timed-out ExecSync waits for the runtime to report the command it started
RUNTIME_START_GRACE = 10.0
# how long a timed-out ExecSync waits for its killed command to be reaped
REAP_TIMEOUT = 10.0


@dataclass(frozen=True)
class CreateOptions:
    log_path: str
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False
    log_size_max: int = -1
    log_level: str = ""  # "" = the daemon's level
    systemd_cgroup: bool = False


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


@dataclass(frozen=True)
class ExecTarget:
    """What a streaming exec needs to run `<binary> <global_args> exec ... <cid>` itself."""

    binary: str
    global_args: tuple[str, ...]
    container_id: str
    process: dict[str, Any] = field(default_factory=dict)


class OciRuntime:
    """One runtime handler (runc, runsc, crun, ...) with its own state root."""

    def __init__(
        self, handler: RuntimeHandler, *, conmon: Path, run_dir: Path, log_level: str = "warn"
    ) -> None:
        self.handler = handler
        self.name = handler.name
        self.binary = str(handler.path)
        self.root = handler.root or run_dir / "runtimes" / handler.name
        self.conmon = str(conmon)
        self.exits_dir = run_dir / "exits"
        # short: the attach socket path must fit into sun_path (108 bytes)
        self.socket_dir = run_dir / "s"
        self.log_level = _conmon_level(log_level)
        self._rro: bool | None = handler.recursive_read_only_mounts  # None: ask the runtime

    async def recursive_read_only_mounts(self) -> bool:
        """The handler can make bind mounts recursively read-only: the config says so, or the
        runtime lists `rro` among its mount options and the kernel has mount_setattr."""
        if self._rro is None:
            self._rro = await asyncio.to_thread(
                features.supports_recursive_read_only, self.binary, self.handler.runtime_args
            )
        return self._rro

    @property
    def is_sandboxed(self) -> bool:
        return self.handler.type == "vm"

    @property
    def is_gvisor(self) -> bool:
        return Path(self.binary).name == "runsc"

    async def _kill_in_sandbox(self, cid: str, internal_pid_file: str) -> None:
        if not internal_pid_file:
            return
        try:
            internal = int((await asyncio.to_thread(Path(internal_pid_file).read_text)).strip())
        except (OSError, ValueError):
            return
        with contextlib.suppress(Exception):
            await run(
                [self.binary, *self.global_args(), "kill", "--pid", str(internal), cid, "9"], time_limit=10
            )

    def global_args(self) -> list[str]:
        return [f"--root={self.root}", *self.handler.runtime_args]

    def exit_file(self, cid: str) -> Path:
        return self.exits_dir / cid

    def attach_socket(self, cid: str) -> Path:
        return self.socket_dir / cid / "attach"

    def prepare_dirs(self) -> None:
        for d in (self.root, self.exits_dir, self.socket_dir):
            d.mkdir(parents=True, exist_ok=True)

    async def _runtime(self, *args: str, time_limit: float = 60.0, stdin: bytes | None = None) -> bytes:
        done = await run([self.binary, *self.global_args(), *args], stdin=stdin, time_limit=time_limit)
        if done.returncode != 0:
            text = done.error_text()
            lowered = text.lower()
            if "does not exist" in lowered or ("not found" in lowered and "container" in lowered):
                raise NotFound(f"{self.name}: {text}")
            raise Internal(f"{self.name} {args[0]}: {text}")
        return done.stdout

    async def create(self, cid: str, bundle: Path, persist_dir: Path, opts: CreateOptions) -> tuple[int, int]:
        """Create the container under a new conmon; returns (container pid, conmon pid)."""
        self.prepare_dirs()
        with contextlib.suppress(FileNotFoundError):
            self.exit_file(cid).unlink()
        args = [
            self.conmon,
            "-b", str(bundle),
            "-c", cid,
            "-u", cid,
            "-n", cid,
            "-r", self.binary,
            "--exit-dir", str(self.exits_dir),
            "--persist-dir", str(persist_dir),
            "-l", opts.log_path or "none",
            "--log-level", opts.log_level or self.log_level,
            "-P", str(bundle / "conmon-pidfile"),
            "-p", str(bundle / "pidfile"),
            "--socket-dir-path", str(self.socket_dir),
        ]  # fmt: skip
        for arg in self.global_args():
            args += ["--runtime-arg", arg]
        if opts.systemd_cgroup:
            args.append("-s")
        if opts.log_size_max >= 0:
            args += ["--log-size-max", str(opts.log_size_max)]
        if opts.tty:
            args.append("-t")
        elif opts.stdin:
            args.append("-i")
        if opts.stdin and not opts.stdin_once and not opts.tty:
            args.append("--leave-stdin-open")
        sync_ours, sync_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        start_ours, start_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = await _spawn_conmon(args, bundle, sync_theirs.fileno(), start_theirs.fileno())
            sync_theirs.close()
            start_theirs.close()
            start_ours.sendall(b"\0")
            line = await asyncio.wait_for(_read_line(sync_ours), CREATE_TIMEOUT)
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
            raise Internal(f"container create failed: {_with_hint(message)}")
        conmon_pid = int((bundle / "conmon-pidfile").read_text().strip() or 0)
        return pid, conmon_pid

    async def run_detached(self, cid: str, bundle: Path) -> int:
        """Create and start in one call with no monitor (the pause process needs no log,
        attach socket or exit file); returns the container's pid."""
        self.prepare_dirs()
        pid_file = bundle / "pidfile"
        err_path = bundle / "runtime.err"
        args = [self.binary, *self.global_args(), "run", "--detach", "--bundle", str(bundle)]
        args += ["--pid-file", str(pid_file), cid]
        # the container inherits the runtime's stdio: a pipe would never see EOF
        err = await asyncio.to_thread(err_path.open, "wb")
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        finally:
            err.close()
        try:
            await asyncio.wait_for(proc.wait(), CREATE_TIMEOUT)
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if proc.returncode != 0:
            text = err_path.read_text(errors="replace").strip()
            raise Internal(f"{self.name} run (infra): {_with_hint(text) or f'exit status {proc.returncode}'}")
        return int(pid_file.read_text().strip())

    async def start(self, cid: str) -> None:
        await self._runtime("start", cid)

    async def state(self, cid: str) -> dict[str, Any] | None:
        done = await run([self.binary, *self.global_args(), "state", cid], time_limit=30.0)
        if done.returncode != 0:
            return None
        parsed: dict[str, Any] = json.loads(done.stdout)
        return parsed

    async def kill(self, cid: str, signal: int, *, all_processes: bool = False) -> None:
        args = ["kill"]
        if all_processes:
            args.append("--all")
        await self._runtime(*args, cid, str(signal))

    async def delete(self, cid: str, *, force: bool = False) -> None:
        args = ["delete"]
        if force:
            args.append("--force")
        try:
            await self._runtime(*args, cid)
        except NotFound:
            pass

    async def update(self, cid: str, resources: dict[str, Any]) -> None:
        await self._runtime("update", "--resources", "-", cid, stdin=json.dumps(resources).encode())

    async def exec_sync(
        self, cid: str, process: dict[str, Any], limit_s: int, *, tty: bool = False
    ) -> ExecResult:
        """Run a command in the container and collect its output (ExecSync).

        Without a terminal the runtime's `exec` runs directly with pipes: conmon and its
        temporary CRI log add a process and a file per probe for nothing. A terminal needs
        conmon's pty handling."""
        # only a child subreaper adopts the detached command and learns its exit status
        if tty or not exits.is_child_subreaper():
            return await self.exec_sync_conmon(cid, process, limit_s, tty=tty)
        return await self.exec_sync_direct(cid, process, limit_s)

    async def exec_sync_direct(self, cid: str, process: dict[str, Any], limit_s: int) -> ExecResult:
        """`exec --detach` with pipes of ours as the command's stdio, then wait for the
        command itself (the daemon, a child subreaper, adopts it): a foreground `runc exec`
        would also wait for anything the command left running in the background."""
        self.prepare_dirs()
        fd, spec_name = tempfile.mkstemp(prefix="exec-", suffix=".json", dir=self.exits_dir.parent)
        with os.fdopen(fd, "w") as spec_file:
            json.dump(process, spec_file)
        pid_file = spec_name + ".pid"
        # gVisor: the host pid is only a waiter; a timeout must reach the sandbox's process
        internal_pid_file = spec_name + ".ipid" if self.is_gvisor else ""
        out = _FdCollector()
        err = _FdCollector()
        timed_out = False
        code: int | None = None
        try:
            # a session of its own: the command inherits the process group, which a
            # timeout kills whole, as conmon does
            proc = await asyncio.create_subprocess_exec(
                self.binary,
                *self.global_args(),
                "exec",
                "--detach",
                "--pid-file",
                pid_file,
                *(["--internal-pid-file", internal_pid_file] if internal_pid_file else []),
                "--process",
                spec_name,
                cid,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out.write_fd,
                stderr=err.write_fd,
                start_new_session=True,
            )
            out.start()
            err.start()
            pid = 0
            try:
                async with asyncio.timeout(limit_s if limit_s > 0 else None):
                    if await proc.wait() != 0:
                        # the runtime failed before the command ran; its words are on stderr
                        await err.finish(0.5)
                        text = err.data.decode(errors="replace").strip()
                        raise Internal(f"exec failed: {text or f'exit status {proc.returncode}'}")
                    pid = int(await asyncio.to_thread(Path(pid_file).read_text))
                    code = await exits.wait_child_status(pid)
            except TimeoutError:
                timed_out = True
                if pid == 0:
                    # the time ran out while the runtime was still starting the command (a
                    # loaded node): let it finish, so the command it started is known and killed
                    pid = await _started_pid(proc, pid_file)
                _kill_command(proc.pid, pid)
                await self._kill_in_sandbox(cid, internal_pid_file)
                # answer only once the command is gone: reaped, not even a zombie that a
                # `ps` or `pgrep` in the container would still list
                if pid > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(exits.wait_child_status(pid), REAP_TIMEOUT)
            except BaseException:
                _kill_command(proc.pid, pid)
                await asyncio.shield(self._kill_in_sandbox(cid, internal_pid_file))
                raise
            # the command is gone; a background child holding the pipes open must not hold
            # the reply: take what is buffered and stop reading
            await asyncio.gather(out.finish(0.01), err.finish(0.01))
        finally:
            out.close()
            err.close()
            for name in (spec_name, pid_file, internal_pid_file):
                if not name:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name)
        if timed_out:
            return ExecResult(-1, b"", b"command timed out", timed_out=True)
        return ExecResult(code if code is not None else -1, out.data, err.data)

    async def exec_sync_conmon(
        self, cid: str, process: dict[str, Any], limit_s: int, *, tty: bool = False
    ) -> ExecResult:
        """Run a command in the container under `conmon --exec --sync` (protocol-facts §1.8)."""
        self.prepare_dirs()
        with tempfile.TemporaryDirectory(prefix="exec-", dir=self.exits_dir.parent) as tmp_name:
            tmp = Path(tmp_name)
            spec_path = tmp / "process.json"
            spec_path.write_text(json.dumps(process))
            log_path = tmp / "log"
            args = [
                self.conmon,
                "-c", cid,
                "-n", cid,
                "-r", self.binary,
                "-p", str(tmp / "pid"),
                "-e",
                "-l", str(log_path),
                "--socket-dir-path", str(self.socket_dir),
                "--log-level", self.log_level,
                "--sync",
                "--log-global-size-max", str(2 * EXEC_OUTPUT_CAP),
                "--exec-process-spec", str(spec_path),
            ]  # fmt: skip
            if tty:
                args.append("-t")
            if limit_s > 0:
                args += ["-T", str(limit_s)]
            for arg in self.global_args():
                args += ["--runtime-arg", arg]
            sync_r, sync_w = os.pipe()
            start_ours, start_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            reader = _PipeReader(sync_r)
            try:
                proc = await _spawn_conmon(args, tmp, sync_w, start_theirs.fileno())
                os.close(sync_w)
                sync_w = -1
                start_theirs.close()
                start_ours.sendall(b"\0")
                try:
                    await proc.wait()
                except BaseException:
                    # a cancelled ExecSync takes its process group with it
                    if proc.returncode is None:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(proc.pid, 9)
                        await proc.wait()
                    raise
                # conmon wrote its one line before exiting; a descendant that kept the
                # pipe open must not make us wait for EOF
                line = reader.read_available()
            finally:
                reader.close()
                if sync_w >= 0:
                    os.close(sync_w)
                start_ours.close()
                start_theirs.close()
            text = line.decode(errors="replace").strip().splitlines()
            reply: dict[str, Any] = json.loads(text[-1]) if text else {}
            code = int(reply.get("exit_code", -1))
            message = str(reply.get("message", ""))
            if code == -1:
                if "timed out" in message:
                    return ExecResult(-1, b"", b"command timed out", timed_out=True)
                detail = message or f"conmon exit status {proc.returncode}"
                raise Internal(f"exec failed: {detail}")
            stdout, stderr = await asyncio.to_thread(read_cri_log_streams, log_path)
            return ExecResult(code, stdout, stderr)

    async def reopen_log(self, bundle: Path) -> None:
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


class _FdCollector:
    """One pipe: the write end goes to the command, the read end is drained on the loop,
    keeping the first 16 MiB (the rest is read and dropped so the writer never blocks,
    CVE-2022-1708)."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.buf = bytearray()
        self._eof: asyncio.Future[None] | None = None
        self._reading = False

    @property
    def data(self) -> bytes:
        return bytes(self.buf)

    def start(self) -> None:
        # the child holds its copy; ours would keep the pipe from ever reaching EOF
        os.close(self.write_fd)
        self.write_fd = -1
        loop = asyncio.get_running_loop()
        self._eof = loop.create_future()
        loop.add_reader(self.read_fd, self._readable)
        self._reading = True

    def _readable(self) -> None:
        while True:
            try:
                chunk = os.read(self.read_fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                self._stop_reading()
                return
            room = EXEC_OUTPUT_CAP - len(self.buf)
            if room > 0:
                self.buf += chunk[:room]

    def _stop_reading(self) -> None:
        if self._reading:
            asyncio.get_running_loop().remove_reader(self.read_fd)
            self._reading = False
        if self._eof is not None and not self._eof.done():
            self._eof.set_result(None)

    async def finish(self, grace: float) -> None:
        """Read what is buffered; wait up to `grace` for the end, then stop."""
        if self._eof is None:
            return
        self._readable()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._eof), grace)
        self._stop_reading()

    def close(self) -> None:
        if self._reading:
            self._stop_reading()
        for fd in (self.read_fd, self.write_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.read_fd = self.write_fd = -1


async def _spawn_conmon(
    args: list[str], cwd: Path, sync_fd: int, start_fd: int
) -> asyncio.subprocess.Process:
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


def _with_hint(message: str) -> str:
    # runsc (2022) probes /proc/sys/net/core/rmem_default, which newer kernels show in every
    # network namespace, and so takes each pod's for the host's
    if "cannot run with network enabled in root network namespace" in message:
        return message + " (this kernel needs runsc's runtime_args: [--network=host])"
    return message


async def _started_pid(proc: asyncio.subprocess.Process, pid_file: str) -> int:
    """The pid a still-running `exec --detach` writes once it started the command; 0 if none."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(RUNTIME_START_GRACE):
            await proc.wait()
    try:
        return int(await asyncio.to_thread(Path(pid_file).read_text))
    except (OSError, ValueError):
        return 0


def _kill_command(runtime_pid: int, pid: int) -> None:
    """Kill an exec'd command and what it started: its process group (the runtime may have
    given it one of its own) and the runtime's."""
    groups = {runtime_pid}
    if pid > 0:
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(pid))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, 9)


def read_cri_log_streams(path: Path) -> tuple[bytes, bytes]:
    """Split a CRI-format log into stdout and stderr, each capped at 16 MiB."""
    out = bytearray()
    err = bytearray()
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return b"", b""
    with f:
        for raw in f:
            parts = raw.split(b" ", 3)
            if len(parts) < 4:
                continue
            _, stream, tag, content = parts
            if tag == b"P" and content.endswith(b"\n"):
                content = content[:-1]
            target = out if stream == b"stdout" else err
            room = EXEC_OUTPUT_CAP - len(target)
            if room > 0:
                target += content[:room]
    return bytes(out), bytes(err)


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


class _PipeReader:
    """Collects everything written to a pipe, without blocking the loop."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)

    def read_available(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return b"".join(chunks)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _conmon_level(level: str) -> str:
    level = level.lower()
    return level if level in ("error", "warn", "info", "debug", "trace") else "warn"
