"""`OciRuntime`: a runc-compatible runtime binary driven through conmon.

The one implementation of `ContainerRuntime` today; runc, crun, runsc (gVisor) and Kata's
OCI command line are handlers of it (runsc through `GvisorRuntime`, oci/gvisor.py, which
changes how a container joins its pod's sandbox). What differs between them is
configuration, not code paths chosen by binary name: `type: vm` marks a runtime whose pod is
one VM, `sandbox_pids` one whose processes have pids of the sandbox's (gVisor), which exec
reports and kill uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cri_py.config.model import RuntimeHandler
from cri_py.errors import Internal, NotFound
from cri_py.oci import conmon as monitor
from cri_py.oci import exec_fifo, exits, features, runc_delete
from cri_py.oci.attach import AttachConnection
from cri_py.oci.cgroups import CgroupUsage, cgroup_relpath, read_usage
from cri_py.oci.exec import ExecProcess, ExecRuntime, exec_sync
from cri_py.oci.exits import ExitInfo
from cri_py.oci.interface import Created, CreateOptions, ExecResult
from cri_py.oci.process import run
from cri_py.oci.stdio import StdioSession, TerminalSize

if TYPE_CHECKING:
    from cri_py.events import EventBus

# the daemon's own bound on one runtime call (update, kill, delete, ...): a request's deadline
# ends it sooner, and a client that set none still gets an answer after this (seconds)
CALL_LIMIT = 60.0


class OciRuntime:
    """One runtime handler (runc, runsc, crun, ...) with its own state root."""

    def __init__(
        self,
        handler: RuntimeHandler,
        *,
        conmon: Path,
        run_dir: Path,
        log_level: str = "warn",
        cgroup_driver: str = "cgroupfs",
        events: EventBus | None = None,
    ) -> None:
        self._handler = handler
        # where each runtime call's latency is published (metrics); None = not measured
        self._events = events
        self.binary = str(handler.path)
        self.root = handler.root or run_dir / "runtimes" / handler.name
        self.conmon = str(conmon)
        self.exits_dir = run_dir / "exits"
        # short: the attach socket path must fit into sun_path (108 bytes)
        self.socket_dir = run_dir / "s"
        self.log_level = monitor.level(log_level)
        self.cgroup_driver = cgroup_driver
        self._rro: bool | None = handler.recursive_read_only_mounts  # None: ask the runtime
        self._exec = ExecRuntime(
            self.binary, tuple(self.global_args()), handler.sandbox_pids, run_dir / "exec"
        )

    @property
    def name(self) -> str:
        return self._handler.name

    @property
    def handler(self) -> RuntimeHandler:
        return self._handler

    @property
    def is_sandboxed(self) -> bool:
        return self._handler.type == "vm"

    async def recursive_read_only_mounts(self) -> bool:
        """The handler can make bind mounts recursively read-only: the config says so, or the
        runtime lists `rro` among its mount options and the kernel has mount_setattr."""
        if self._rro is None:
            self._rro = await asyncio.to_thread(
                features.supports_recursive_read_only, self.binary, self._handler.runtime_args
            )
        return self._rro

    async def capabilities(self) -> frozenset[str] | None:
        return None

    def global_args(self) -> list[str]:
        return [f"--root={self.root}", *self._handler.runtime_args]

    def exit_file(self, cid: str) -> Path:
        return self.exits_dir / cid

    def _prepare_dirs(self) -> None:
        for d in (self.root, self.exits_dir, self.socket_dir):
            d.mkdir(parents=True, exist_ok=True)

    def _timed(self, operation: str) -> contextlib.AbstractContextManager[None]:
        if self._events is None:
            return contextlib.nullcontext()
        return self._events.timed("runtime", operation, self.name)

    async def _runtime(self, *args: str, stdin: bytes | None = None) -> bytes:
        with self._timed(args[0]):
            done = await run([self.binary, *self.global_args(), *args], stdin=stdin, time_limit=CALL_LIMIT)
        if done.returncode != 0:
            text = done.error_text()
            lowered = text.lower()
            if "does not exist" in lowered or ("not found" in lowered and "container" in lowered):
                raise NotFound(f"{self.name}: {text}")
            raise Internal(f"{self.name} {args[0]}: {text}")
        return done.stdout

    # ---- life cycle --------------------------------------------------------------------

    async def create(self, cid: str, bundle: Path, persist_dir: Path, opts: CreateOptions) -> Created:
        self._prepare_dirs()
        with contextlib.suppress(FileNotFoundError):
            self.exit_file(cid).unlink()
        runtime, runtime_args = self._conmon_runtime(cid)
        args = [
            self.conmon,
            "-b", str(bundle),
            "-c", cid,
            "-u", cid,
            "-n", cid,
            "-r", runtime,
            "--exit-dir", str(self.exits_dir),
            "--persist-dir", str(persist_dir),
            "-l", opts.log_path or "none",
            "--log-level", opts.log_level or self.log_level,
            "-P", str(bundle / "conmon-pidfile"),
            "-p", str(bundle / "pidfile"),
            "--socket-dir-path", str(self.socket_dir),
        ]  # fmt: skip
        for arg in runtime_args:
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
        with self._timed("create"):
            pid, monitor_pid = await monitor.create(args, bundle)
        return Created(pid, monitor_pid)

    def _conmon_runtime(self, cid: str) -> tuple[str, list[str]]:
        """The runtime conmon runs for a create, and its global arguments."""
        return self.binary, self.global_args()

    async def run_detached(self, cid: str, bundle: Path) -> int:
        """Create and start in one call with no monitor (the pause process needs no log,
        attach socket or exit file); returns the container's pid."""
        self._prepare_dirs()
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
            await asyncio.wait_for(proc.wait(), monitor.CREATE_TIMEOUT)
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if proc.returncode != 0:
            text = err_path.read_text(errors="replace").strip()
            raise Internal(
                f"{self.name} run (infra): {monitor.with_hint(text) or f'exit status {proc.returncode}'}"
            )
        return int(pid_file.read_text().strip())

    async def start(self, cid: str) -> None:
        state_dir = self.root / cid
        if exec_fifo.fifo_of(state_dir) is not None:
            # runc's own start without its process: see oci/exec_fifo.py
            with self._timed("start"):
                if await exec_fifo.release(state_dir):
                    return
        await self._runtime("start", cid)

    async def kill(self, cid: str, signal: int, *, all_processes: bool = False) -> None:
        args = ["kill"]
        if all_processes:
            args.append("--all")
        await self._runtime(*args, cid, str(signal))

    async def delete(self, cid: str, *, force: bool = False) -> None:
        state_dir = self.root / cid
        if (state_dir / exec_fifo.STATE).is_file():
            # runc's own delete of a stopped container without its process: oci/runc_delete.py
            with self._timed("delete"):
                if await asyncio.to_thread(runc_delete.delete_stopped, state_dir):
                    return
        args = ["delete"]
        if force:
            args.append("--force")
        with contextlib.suppress(NotFound):
            await self._runtime(*args, cid)

    async def wait_exit(self, cid: str, monitor_pid: int) -> None:
        # conmon writes the exit file and exits: its exit is the container's
        await exits.wait_pid_exit(monitor_pid)

    def exit_status(self, cid: str, persist_dir: Path) -> ExitInfo | None:
        return exits.read_exit(self.exit_file(cid), persist_dir / "oom")

    def monitor_alive(self, cid: str, monitor_pid: int) -> bool:
        return monitor.is_conmon(monitor_pid, cid)

    def forget(self, cid: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.exit_file(cid).unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.socket_dir / cid).unlink()

    # ---- processes and stdio -----------------------------------------------------------

    async def exec_sync(self, cid: str, process: dict[str, Any], limit_s: int) -> ExecResult:
        with self._timed("exec"):
            return await exec_sync(self._exec, cid, process, limit_s)

    async def exec_stream(
        self, cid: str, process: dict[str, Any], *, stdin: bool, initial_size: TerminalSize | None
    ) -> StdioSession:
        return await ExecProcess.start(self._exec, cid, process, stdin=stdin, initial_size=initial_size)

    async def attach(self, cid: str, bundle: Path, *, tty: bool, stdin: bool) -> StdioSession:
        return await AttachConnection.connect(
            self.socket_dir / cid / "attach", bundle / "ctl", tty=tty, stdin=stdin
        )

    async def reopen_log(self, cid: str, bundle: Path) -> None:
        await monitor.reopen_log(bundle)

    # ---- resources ---------------------------------------------------------------------

    async def update(self, cid: str, resources: dict[str, Any]) -> None:
        await self._runtime("update", "--resources", "-", cid, stdin=json.dumps(resources).encode())

    async def stats(self, cgroups_path: str) -> CgroupUsage | None:
        if not cgroups_path:
            return None
        return await asyncio.to_thread(read_usage, cgroup_relpath(cgroups_path, self.cgroup_driver))
