"""What the streaming server needs from the rest of the daemon, and nothing more.

The server never looks at containers or pods: the gRPC handlers resolve a request into one of
the targets below, and a `StreamingBackend` turns a target into live byte streams. Tests can
drive the server with a backend over hand-made runc containers and namespaces.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class TerminalSize:
    width: int
    height: int


@dataclass(frozen=True)
class ExecTarget:
    """Enough to run `<runtime_path> <runtime_args> exec --process <spec> <container_id>`.

    `process_spec` is the container's OCI `process` object; args and terminal are replaced
    per exec.
    """

    runtime_path: str
    runtime_args: tuple[str, ...]
    container_id: str
    process_spec: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class AttachTarget:
    """conmon's attach socket and ctl FIFO of a running container."""

    attach_socket: Path
    ctl_fifo: Path
    tty: bool
    stdin: bool
    # kubelet's StdinOnce: when false and not a tty, attach ends with the client's stdin.
    stdin_once: bool = True


@dataclass(frozen=True)
class PortForwardTarget:
    """The pod's network namespace (a bind-mounted nsfs file, or /proc/<pid>/ns/net)."""

    netns: Path


class StdioSession(Protocol):
    """The stdio of a process (exec) or of a running container (attach)."""

    async def write_stdin(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    async def read_output(self) -> tuple[int, bytes]:
        """(1, data) for stdout, (2, data) for stderr; (0, b"") once all output ended."""
        ...

    async def resize(self, size: TerminalSize) -> None: ...

    async def wait(self) -> int | None:
        """The exit code (exec), or None when there is none to report (attach)."""
        ...

    async def close(self) -> None:
        """Release everything; an exec process still running is killed. Idempotent."""
        ...


class StreamingBackend(Protocol):
    async def exec(
        self,
        target: ExecTarget,
        cmd: list[str],
        *,
        tty: bool,
        stdin: bool,
        initial_size: TerminalSize | None,
    ) -> StdioSession: ...

    async def attach(self, target: AttachTarget) -> StdioSession: ...

    async def connect(
        self, target: PortForwardTarget, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TCP connection to localhost:port inside the target's network namespace."""
        ...
