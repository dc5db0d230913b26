"""`ShimRuntime`: a `type: vm` handler, a containerd shim v2 binary whose pod is one VM.

Kata Containers ships its runtime as `containerd-shim-kata-v2` and nothing else that creates
containers: CRI-O drives it the same way (`runtime_type = "vm"`). The pod's infra container
starts the shim (its `start`) and is created in it first, annotated
io.kubernetes.cri.container-type=sandbox: the VM boots. Each container of the pod is created
in the same shim (container-type=container, io.kubernetes.cri.sandbox-id=<pod>), that is
inside the VM. Exits come from the shim's Wait, exec from its Exec; the containers' stdio
comes through FIFOs that the daemon reads and logs itself (shim/io.py), as there is no conmon.

Per handler under `<run_dir>/shims/<handler>/`: `pods/<pod id>` holds the shim's address,
`containers/<id>/` a container's pod id and its FIFOs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cri_py.api import shimv2_pb2 as pb
from cri_py.config.model import RuntimeHandler
from cri_py.errors import FailedPrecondition, Internal, NotFound
from cri_py.oci import exits
from cri_py.oci.cgroups import CgroupUsage, cgroup_relpath, read_usage
from cri_py.oci.exits import ExitInfo
from cri_py.oci.interface import Created, CreateOptions, ExecResult, NeverStarted
from cri_py.oci.spec import ANNOTATION_SANDBOX_ID
from cri_py.oci.stdio import StdioSession, TerminalSize
from cri_py.shim.io import STDERR, STDOUT, Attached, IOSettings, ProcessIO, make_fifos, read_settings
from cri_py.shim.task import TaskClient, process_spec, start_shim
from cri_py.shim.ttrpc import ConnectionLost

if TYPE_CHECKING:
    from cri_py.events import EventBus

log = logging.getLogger("cri_py.shim")

EXEC_OUTPUT_CAP = 16 * 1024 * 1024
# the status of a container whose VM (shim) is gone: everything in it was killed
VM_GONE = 137


class ShimRuntime:
    """One `type: vm` handler."""

    def __init__(
        self,
        handler: RuntimeHandler,
        *,
        run_dir: Path,
        cgroup_driver: str = "cgroupfs",
        events: EventBus | None = None,
    ) -> None:
        self._handler = handler
        self.binary = str(handler.path)
        self.state_dir = run_dir / "shims" / handler.name
        self.exits_dir = run_dir / "exits"
        self.cgroup_driver = cgroup_driver
        # the shim publishes events here; cri-py serves no such socket and needs none
        self.events_address = run_dir / "shims" / "events.sock"
        self._clients: dict[str, TaskClient] = {}
        self._ios: dict[str, ProcessIO] = {}

    @property
    def name(self) -> str:
        return self._handler.name

    @property
    def handler(self) -> RuntimeHandler:
        return self._handler

    @property
    def is_sandboxed(self) -> bool:
        return True

    async def recursive_read_only_mounts(self) -> bool:
        return False

    async def capabilities(self) -> frozenset[str] | None:
        return None

    # ---- where things are ----------------------------------------------------------------

    def _pod_file(self, pod_id: str) -> Path:
        return self.state_dir / "pods" / pod_id

    def _container_dir(self, cid: str) -> Path:
        return self.state_dir / "containers" / cid

    def _pod_of(self, cid: str) -> str:
        try:
            return (self._container_dir(cid) / "pod").read_text().strip()
        except OSError as exc:
            raise NotFound(f"{self.name}: no container {cid} here") from exc

    def _client(self, pod_id: str) -> TaskClient:
        client = self._clients.get(pod_id)
        if client is None:
            try:
                address = self._pod_file(pod_id).read_text().strip()
            except OSError as exc:
                raise NotFound(f"{self.name}: no shim for pod {pod_id}") from exc
            client = self._clients[pod_id] = TaskClient(address)
        return client

    def _client_of(self, cid: str) -> TaskClient:
        return self._client(self._pod_of(cid))

    def _remember(self, cid: str, pod_id: str) -> None:
        directory = self._container_dir(cid)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "pod").write_text(pod_id + "\n")

    # ---- life cycle --------------------------------------------------------------------

    async def run_detached(self, cid: str, bundle: Path) -> int:
        """The pod's infra container: start its shim and create and start it there (the VM)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "pods").mkdir(exist_ok=True)
        address = await start_shim(self.binary, cid, bundle, self.events_address)
        self._pod_file(cid).write_text(address + "\n")
        self._remember(cid, cid)
        client = self._client(cid)
        try:
            await client.create(pb.CreateTaskRequest(id=cid, bundle=str(bundle)))
            return await client.start(cid)
        except BaseException:
            await asyncio.shield(self._shut_down(cid))
            raise

    async def create(self, cid: str, bundle: Path, persist_dir: Path, opts: CreateOptions) -> Created:
        spec = json.loads((bundle / "config.json").read_text())
        pod_id = str(spec.get("annotations", {}).get(ANNOTATION_SANDBOX_ID, ""))
        if not pod_id or not self._pod_file(pod_id).exists():
            raise FailedPrecondition(f"{self.name}: container {cid} names no running pod VM")
        # as containerd does: the shim's start for the container answers its pod's shim
        address = await start_shim(self.binary, cid, bundle, self.events_address)
        client = self._client(pod_id)
        if address != client.address:
            raise Internal(f"{self.name}: the shim put container {cid} outside its pod ({address})")
        self._remember(cid, pod_id)
        with contextlib.suppress(FileNotFoundError):
            (self.exits_dir / cid).unlink()
        settings = IOSettings(opts.log_path, opts.tty, opts.stdin, opts.stdin_once, opts.log_size_max)
        fifos = make_fifos(self._container_dir(cid) / "io", settings)
        io = self._ios[cid] = ProcessIO(self._container_dir(cid) / "io", settings)
        try:
            pid = await client.create(
                pb.CreateTaskRequest(
                    id=cid,
                    bundle=str(bundle),
                    terminal=opts.tty,
                    stdin=fifos["stdin"],
                    stdout=fifos["stdout"],
                    stderr=fifos["stderr"],
                )
            )
            shim_pid = (await client.connect(cid)).shim_pid
        except BaseException:
            io.stop()
            self._ios.pop(cid, None)
            raise
        return Created(pid, shim_pid)

    async def start(self, cid: str) -> None:
        try:
            await self._client_of(cid).start(cid)
        except Internal as exc:
            raise NeverStarted(str(exc)) from exc

    async def kill(self, cid: str, signal: int, *, all_processes: bool = False) -> None:
        await self._client_of(cid).kill(cid, signal, all_processes=all_processes)

    async def delete(self, cid: str, *, force: bool = False) -> None:
        try:
            client = self._client_of(cid)
        except NotFound:
            return
        with contextlib.suppress(NotFound, ConnectionLost):
            if force:
                with contextlib.suppress(Internal):
                    await client.kill(cid, 9, all_processes=True)
            await client.delete(cid)
        if self._pod_of(cid) == cid:
            await self._shut_down(cid)

    async def _shut_down(self, pod_id: str) -> None:
        """The pod's VM goes: its shim exits (and with it what it ran)."""
        client = self._clients.pop(pod_id, None)
        if client is None and self._pod_file(pod_id).exists():
            client = TaskClient(self._pod_file(pod_id).read_text().strip())
        if client is not None:
            with contextlib.suppress(ConnectionLost, Internal, NotFound):
                if not await client.shutdown(pod_id):
                    log.warning("shim still connected after Shutdown", extra={"pod": pod_id})
            await client.close()
        for done in (self._pod_file(pod_id), self.exits_dir / pod_id):
            with contextlib.suppress(FileNotFoundError):
                done.unlink()
        shutil.rmtree(self._container_dir(pod_id), ignore_errors=True)

    def _io(self, cid: str) -> ProcessIO:
        """The container's stdio, opened again after a daemon restart."""
        io = self._ios.get(cid)
        if io is None:
            directory = self._container_dir(cid) / "io"
            settings = read_settings(directory)
            if settings is None:
                raise FailedPrecondition(f"container {cid} has no stdio here")
            io = self._ios[cid] = ProcessIO(directory, settings)
        return io

    async def wait_exit(self, cid: str, monitor_pid: int) -> None:
        try:
            io = self._io(cid)
        except FailedPrecondition:
            io = None
        try:
            answer = await self._client_of(cid).wait(cid)
            code = answer.exit_status
        except (ConnectionLost, Internal):
            # the shim (the VM) is gone: so is everything it ran
            code = VM_GONE
        except NotFound:
            code = -1
        if code >= 0:
            await asyncio.to_thread(self._write_exit, cid, code)
        if io is not None:
            await io.finish()

    def _write_exit(self, cid: str, code: int) -> None:
        # conmon's exit file: the status as text, the file's ctime the time of the exit
        self.exits_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.exits_dir / f".{cid}.tmp"
        tmp.write_text(str(code))
        tmp.replace(self.exits_dir / cid)

    def exit_status(self, cid: str, persist_dir: Path) -> ExitInfo | None:
        return exits.read_exit(self.exits_dir / cid, persist_dir / "oom")

    def monitor_alive(self, cid: str, monitor_pid: int) -> bool:
        """Is `monitor_pid` still the shim of this container's pod (pids are reused)? A shim
        names its pod on its command line (`-id <pod id>`)."""
        if not exits.process_alive(monitor_pid):
            return False
        try:
            pod_id = self._pod_of(cid)
            with open(f"/proc/{monitor_pid}/cmdline", "rb") as f:
                return pod_id.encode() in f.read()
        except (OSError, NotFound):
            return False

    def forget(self, cid: str) -> None:
        io = self._ios.pop(cid, None)
        if io is not None:
            io.stop()
        with contextlib.suppress(FileNotFoundError):
            (self.exits_dir / cid).unlink()
        shutil.rmtree(self._container_dir(cid), ignore_errors=True)

    # ---- processes and stdio -----------------------------------------------------------

    async def exec_sync(self, cid: str, process: dict[str, Any], limit_s: int) -> ExecResult:
        session = await self._exec(cid, dict(process, terminal=False), stdin=False)
        out = bytearray()
        err = bytearray()

        async def collect() -> None:
            while True:
                stream, data = await session.read_output()
                if stream == 0:
                    return
                target = out if stream == STDOUT else err
                target += data[: max(0, EXEC_OUTPUT_CAP - len(target))]

        reader = asyncio.ensure_future(collect())
        try:
            try:
                async with asyncio.timeout(limit_s if limit_s > 0 else None):
                    code = await session.wait()
            except TimeoutError:
                return ExecResult(-1, b"", b"command timed out", timed_out=True)
            await asyncio.wait({reader}, timeout=1.0)
            return ExecResult(code if code is not None else -1, bytes(out), bytes(err))
        finally:
            reader.cancel()
            await session.close()

    async def exec_stream(
        self, cid: str, process: dict[str, Any], *, stdin: bool, initial_size: TerminalSize | None
    ) -> StdioSession:
        session = await self._exec(cid, process, stdin=stdin)
        if initial_size is not None and process.get("terminal"):
            await session.resize(initial_size)
        return session

    async def _exec(self, cid: str, process: dict[str, Any], *, stdin: bool) -> ExecSession:
        client = self._client_of(cid)
        exec_id = f"exec-{secrets.token_hex(8)}"
        directory = self._container_dir(cid) / exec_id
        settings = IOSettings("", bool(process.get("terminal")), stdin, stdin_once=True)
        fifos = make_fifos(directory, settings)
        io = ProcessIO(directory, settings)
        session = ExecSession(client, cid, exec_id, io, directory)
        try:
            await client.exec(
                pb.ExecProcessRequest(
                    id=cid,
                    exec_id=exec_id,
                    terminal=settings.tty,
                    spec=process_spec(json.dumps(process).encode()),
                    stdin=fifos["stdin"],
                    stdout=fifos["stdout"],
                    stderr=fifos["stderr"],
                )
            )
            await client.start(cid, exec_id)
        except BaseException:
            await session.close()
            raise
        session.started = True
        return session

    async def attach(self, cid: str, bundle: Path, *, tty: bool, stdin: bool) -> StdioSession:
        client = self._client_of(cid)

        async def resize(size: TerminalSize) -> None:
            await client.resize(cid, "", size.width, size.height)

        return Attached(self._io(cid), stdin=stdin, resize=resize)

    async def reopen_log(self, cid: str, bundle: Path) -> None:
        self._io(cid).log.reopen()

    # ---- resources ---------------------------------------------------------------------

    async def update(self, cid: str, resources: dict[str, Any]) -> None:
        await self._client_of(cid).update(cid, json.dumps(resources).encode())

    async def stats(self, cgroups_path: str) -> CgroupUsage | None:
        if not cgroups_path:
            return None
        return await asyncio.to_thread(read_usage, cgroup_relpath(cgroups_path, self.cgroup_driver))


class ExecSession:
    """A process started in a container through the shim's Exec (a `StdioSession`)."""

    def __init__(self, client: TaskClient, cid: str, exec_id: str, io: ProcessIO, directory: Path) -> None:
        self._client = client
        self._cid = cid
        self.exec_id = exec_id
        self._io = io
        self._directory = directory
        self._attached = Attached(io, stdin=True)
        self._code: asyncio.Future[int] | None = None
        self.started = False
        self._closed = False

    async def write_stdin(self, data: bytes) -> None:
        await self._attached.write_stdin(data)

    async def close_stdin(self) -> None:
        self._io.close_stdin()
        with contextlib.suppress(Exception):
            await self._client.close_stdin(self._cid, self.exec_id)

    async def read_output(self) -> tuple[int, bytes]:
        return await self._attached.read_output()

    async def resize(self, size: TerminalSize) -> None:
        await self._client.resize(self._cid, self.exec_id, size.width, size.height)

    async def wait(self) -> int | None:
        if self._code is None:
            self._code = asyncio.ensure_future(self._wait())
        return await asyncio.shield(self._code)

    async def _wait(self) -> int:
        answer = await self._client.wait(self._cid, self.exec_id)
        await self._io.finish()
        return int(answer.exit_status)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.started and (self._code is None or not self._code.done()):
            with contextlib.suppress(Exception):
                await self._client.kill(self._cid, 9, exec_id=self.exec_id)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.wait(), 10.0)
        if self.started:
            with contextlib.suppress(Exception):
                await self._client.delete(self._cid, self.exec_id)
        await self._attached.close()
        self._io.stop()
        shutil.rmtree(self._directory, ignore_errors=True)


__all__ = ["ExecSession", "ShimRuntime", "STDERR"]
