"""The stdio of a process in a container (exec) or of the container itself (attach), as the
streaming server relays it; what a runtime's exec_stream and attach hand back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class TerminalSize:
    width: int
    height: int


class StdioSession(Protocol):
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
