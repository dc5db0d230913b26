"""What the streaming server needs from the rest of the daemon, and nothing more.

The server never looks at containers or pods: the gRPC handlers resolve a request into one of
the targets below, and a `StreamingBackend` turns a target into live byte streams. Exec and
attach go to the container's runtime (`ContainerRuntime.exec_stream` / `attach`); tests drive
the server with a fake backend at this seam.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cri_py.oci.interface import ContainerRuntime
from cri_py.oci.stdio import StdioSession, TerminalSize

__all__ = [
    "AttachTarget",
    "ExecTarget",
    "PortForwardTarget",
    "StdioSession",
    "StreamingBackend",
    "TerminalSize",
]


@dataclass(frozen=True)
class ExecTarget:
    """A running container and its OCI `process` (args and terminal are set per exec)."""

    runtime: ContainerRuntime = field(hash=False)
    container_id: str
    process_spec: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class AttachTarget:
    """A running container whose own stdio an attach joins."""

    runtime: ContainerRuntime = field(hash=False)
    container_id: str
    bundle: Path
    tty: bool
    stdin: bool
    # kubelet's StdinOnce: when false and not a tty, attach ends with the client's stdin.
    stdin_once: bool = True


@dataclass(frozen=True)
class PortForwardTarget:
    """The pod's network namespace (a bind-mounted nsfs file, or /proc/<pid>/ns/net)."""

    netns: Path


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
