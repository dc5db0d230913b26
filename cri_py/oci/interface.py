"""What a container runtime does for cri-py: the one seam between the services and a runtime.

The pod and container services, the stats service and the streaming server talk to a
`ContainerRuntime` and to nothing below it. `OciRuntime` (oci/runtime.py) implements it for
runc-compatible binaries under conmon, `GvisorRuntime` (oci/gvisor.py) for runsc, whose pod is
one sandbox; `RuntimeSet` (oci/registry.py) picks the implementation per handler type, which
is where a VM runtime speaking another protocol (containerd's shim v2) plugs in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cri_py.config.model import RuntimeHandler
from cri_py.errors import Internal
from cri_py.oci.cgroups import CgroupUsage
from cri_py.oci.exits import ExitInfo
from cri_py.oci.stdio import StdioSession, TerminalSize


class NeverStarted(Internal):
    """The runtime says the container's process never ran (its start failed)."""


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
class Created:
    pid: int  # the container's init process
    monitor_pid: int  # what watches it and records its exit (conmon)


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


class ContainerRuntime(Protocol):
    """One runtime handler (a Kubernetes RuntimeClass)."""

    @property
    def name(self) -> str: ...

    @property
    def handler(self) -> RuntimeHandler: ...

    @property
    def is_sandboxed(self) -> bool:
        """The pod is one sandbox with a kernel of its own (gVisor, a VM): its infra container
        starts it, every container of the pod joins it, and the pod's PID, IPC, UTS and
        network namespaces are the sandbox's (the node's cannot be shared)."""
        ...

    async def recursive_read_only_mounts(self) -> bool:
        """Can the handler make bind mounts recursively read-only (a CRI handler feature)?"""
        ...

    async def capabilities(self) -> frozenset[str] | None:
        """The capabilities the runtime can grant a container; None: every one the kernel has."""
        ...

    # ---- life cycle ----

    async def create(self, cid: str, bundle: Path, persist_dir: Path, opts: CreateOptions) -> Created:
        """Create the container (not started) under a monitor that records its exit."""
        ...

    async def run_detached(self, cid: str, bundle: Path) -> int:
        """Create and start a container with no monitor (a pod's pause process); its pid."""
        ...

    async def start(self, cid: str) -> None:
        """Start the created container; NeverStarted when its process did not run."""
        ...

    async def kill(self, cid: str, signal: int, *, all_processes: bool = False) -> None: ...

    async def delete(self, cid: str, *, force: bool = False) -> None:
        """Forget the container (its cgroup too); gone already is fine."""
        ...

    async def wait_exit(self, cid: str, monitor_pid: int) -> None:
        """Until the container has exited and exit_status knows how (or its monitor is gone)."""
        ...

    def exit_status(self, cid: str, persist_dir: Path) -> ExitInfo | None:
        """What the monitor recorded of the container's exit; None if nothing (yet)."""
        ...

    def monitor_alive(self, cid: str, monitor_pid: int) -> bool:
        """Is `monitor_pid` still this container's monitor (pids are reused)?"""
        ...

    def forget(self, cid: str) -> None:
        """Remove what the runtime kept of a destroyed container (exit file, sockets)."""
        ...

    # ---- processes and stdio ----

    async def exec_sync(self, cid: str, process: dict[str, Any], limit_s: int) -> ExecResult:
        """Run `process` in the container, collecting its output (ExecSync)."""
        ...

    async def exec_stream(
        self, cid: str, process: dict[str, Any], *, stdin: bool, initial_size: TerminalSize | None
    ) -> StdioSession:
        """Run `process` (its `terminal` says whether with a tty) with live stdio (Exec)."""
        ...

    async def attach(self, cid: str, bundle: Path, *, tty: bool, stdin: bool) -> StdioSession:
        """The stdio of the container's own process (Attach)."""
        ...

    async def reopen_log(self, cid: str, bundle: Path) -> None: ...

    # ---- resources ----

    async def update(self, cid: str, resources: dict[str, Any]) -> None: ...

    async def stats(self, cgroups_path: str) -> CgroupUsage | None:
        """Usage of the container's cgroup; None when it has none (any more)."""
        ...
