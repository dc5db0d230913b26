"""`GvisorRuntime`: gVisor's runsc, where a pod is one sandbox (one gVisor kernel).

The pod's infra container starts the sandbox (`runsc run`, annotated
io.kubernetes.cri.container-type=sandbox); each container of the pod joins it (annotated
container-type=container and io.kubernetes.cri.sandbox-id=<pod id>, which runsc reads in
runsc/specutils/cri.go), so the pod's containers share its PID namespace (when the pod asks
for that), its IPC namespace, its hostname and its network, as they do under runc.

A container inside a sandbox has no process on the host for conmon to watch: `runsc create`
names the sandbox's pid, and `runsc start` hands its own stdio to the container. So conmon
runs gvisor_monitor.sh as its runtime, whose create leaves a small holder process in the
container's place (see the script): the holder keeps conmon's stdio, runs `runsc start` when
StartContainer asks (a line on a FIFO), then `runsc wait`, and exits with the container's
exit status. Logs, attach and the exit file stay conmon's, and survive a daemon restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import shutil
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from cri_py.config.model import RuntimeHandler
from cri_py.errors import DeadlineExceeded, FailedPrecondition
from cri_py.oci import exits, security
from cri_py.oci.interface import Created, CreateOptions, NeverStarted
from cri_py.oci.runtime import OciRuntime

if TYPE_CHECKING:
    from cri_py.events import EventBus

MONITOR_SCRIPT = Path(__file__).with_name("gvisor_monitor.sh")
# how long StartContainer waits for `runsc start` (the holder reports its exit status)
START_TIMEOUT = 120.0
# how long a holder that is still being forked may take to open its start FIFO
HOLDER_READY_TIMEOUT = 10.0


class GvisorRuntime(OciRuntime):
    """runsc under conmon, a pod being one gVisor sandbox."""

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
        super().__init__(
            handler,
            conmon=conmon,
            run_dir=run_dir,
            log_level=log_level,
            cgroup_driver=cgroup_driver,
            events=events,
        )
        # per container: the holder's FIFO, pid and start result (gvisor_monitor.sh)
        self.monitors_dir = run_dir / "gvisor" / handler.name
        # per infra container: the sandbox's and gofer's processes, which we adopted
        self._adopted: dict[str, list[tuple[int, int]]] = {}
        self._capabilities: frozenset[str] | None = None

    @property
    def is_sandboxed(self) -> bool:
        return True

    async def recursive_read_only_mounts(self) -> bool:
        """Yes unless the config says no: runsc has no `features` command, but a read-only
        bind mount in a sandbox is read-only all the way down (the host's mounts beneath its
        source are served by the gofer as part of it), which is what `rro` asks for."""
        if self._rro is None:
            self._rro = True
        return self._rro

    async def capabilities(self) -> frozenset[str] | None:
        """Those runsc knows by name: it refuses to start a container with any other (runsc of
        2022 stops at CAP_AUDIT_READ: "unknown capability \"CAP_PERFMON\"")."""
        if self._capabilities is None:
            self._capabilities = await asyncio.to_thread(_named_in_binary, self.binary)
        return self._capabilities

    def monitor_dir(self, cid: str) -> Path:
        return self.monitors_dir / cid

    def _conmon_runtime(self, cid: str) -> tuple[str, list[str]]:
        script_args = [str(MONITOR_SCRIPT), self.binary, str(self.monitor_dir(cid))]
        return "/bin/sh", [*script_args, *self.global_args()]

    async def create(self, cid: str, bundle: Path, persist_dir: Path, opts: CreateOptions) -> Created:
        created = await super().create(cid, bundle, persist_dir, opts)
        # conmon watches the holder; the container's own pid is the sandbox's (as containerd's
        # runsc shim reports it)
        try:
            text = await asyncio.to_thread((self.monitor_dir(cid) / "runsc.pid").read_text)
            return Created(int(text.strip()), created.monitor_pid)
        except (OSError, ValueError):
            return created

    async def run_detached(self, cid: str, bundle: Path) -> int:
        pid = await super().run_detached(cid, bundle)
        # `runsc run` exits leaving the sandbox and its gofer to us (a child subreaper)
        self._adopted[cid] = await asyncio.to_thread(_adopted_helpers, str(bundle))
        return pid

    async def delete(self, cid: str, *, force: bool = False) -> None:
        """`runsc delete` waits for the sandbox's gofer to be gone, and an exited gofer stays
        a zombie until its parent reaps it: reap ours as they exit, not on the next sweep."""
        adopted = self._adopted.pop(cid, [])
        # (a zombie still has its start time; a reused pid has another)
        reapers = [
            asyncio.ensure_future(exits.wait_pid_exit(pid))
            for pid, started in adopted
            if exits.start_time(pid) == started
        ]
        try:
            # the holder's exit (what conmon recorded) is the container's: runsc may still
            # call a container that never started "created" and refuse it without --force
            await super().delete(cid, force=True)
        finally:
            for reaper in reapers:
                reaper.cancel()
            await asyncio.gather(*reapers, return_exceptions=True)

    async def start(self, cid: str) -> None:
        state = self.monitor_dir(cid)
        holder = self._holder_pid(cid)
        await self._signal_start(state / "start", holder)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        started = state / "started"
        while not await asyncio.to_thread(started.exists):
            if not self._holder_pid(cid):
                # it may have written the result just before it exited
                if await asyncio.to_thread(started.exists):
                    break
                raise NeverStarted(f"{self.name} start: the container's monitor exited before it started")
            if loop.time() > deadline:
                raise DeadlineExceeded(f"{self.name} start did not finish in {START_TIMEOUT:g} s")
            await asyncio.sleep(0.01)
        code = (await asyncio.to_thread(started.read_text)).strip()
        if code != "0":
            raise NeverStarted(f"{self.name} start: {self._start_error(state) or f'exit status {code}'}")

    async def _signal_start(self, fifo: Path, holder: int) -> None:
        """Write the start line to the holder's FIFO (which it opens right after its fork)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HOLDER_READY_TIMEOUT
        while True:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except FileNotFoundError as exc:
                raise FailedPrecondition(f"container was not created by {self.name} here") from exc
            except OSError as exc:
                # ENXIO: nobody reads yet (a holder just forked) or any more (it is gone)
                if exc.errno != errno.ENXIO or not holder or not exits.process_alive(holder):
                    raise NeverStarted(f"{self.name} start: the container's monitor is gone") from exc
                if loop.time() > deadline:
                    raise DeadlineExceeded(
                        f"{self.name} start: the container's monitor never got ready"
                    ) from exc
                await asyncio.sleep(0.01)
                continue
            try:
                os.write(fd, b"start\n")
            finally:
                os.close(fd)
            return

    def _holder_pid(self, cid: str) -> int:
        """The holder's pid while it runs (its command line names its state dir), else 0."""
        try:
            pid = int((self.monitor_dir(cid) / "holder").read_text().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError):
            return 0
        alive = exits.process_alive(pid) and str(self.monitor_dir(cid)).encode() in cmdline
        return pid if alive else 0

    def _start_error(self, state: Path) -> str:
        """runsc's error, from the JSON log its start wrote (`--log-format=json`)."""
        messages = []
        with contextlib.suppress(OSError):
            for line in (state / "start.log").read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError, AttributeError):
                    entry = json.loads(line)
                    if entry.get("level") in ("error", "fatal") or "FATAL" in str(entry.get("msg")):
                        messages.append(str(entry.get("msg", "")).removeprefix("FATAL ERROR: "))
        return messages[-1].strip() if messages else ""

    async def kill(self, cid: str, signal_number: int, *, all_processes: bool = False) -> None:
        if not (self.monitor_dir(cid) / "started").exists():
            # never started: runsc cannot signal a created container; ending its holder ends
            # it for conmon (which records the exit), and delete removes it from the sandbox
            holder = self._holder_pid(cid)
            if holder:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(holder, signal.SIGKILL)
                return
        await super().kill(cid, signal_number, all_processes=all_processes)

    def forget(self, cid: str) -> None:
        self._adopted.pop(cid, None)
        super().forget(cid)
        shutil.rmtree(self.monitor_dir(cid), ignore_errors=True)


def _adopted_helpers(bundle: str) -> list[tuple[int, int]]:
    """Our child processes (pid, start time) that runsc started for `bundle`."""
    me = str(os.getpid()).encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, IndexError):
            continue
        if fields[1] == me and bundle.encode() in cmdline:
            found.append((int(entry), exits.start_time(int(entry))))
    return found


def _named_in_binary(binary: str) -> frozenset[str]:
    """The capabilities whose names the runtime binary carries (its table of known ones)."""
    data = Path(binary).read_bytes()
    return frozenset(cap for cap in security.ALL_CAPABILITIES if cap.encode() in data)
