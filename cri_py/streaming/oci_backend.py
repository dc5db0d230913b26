"""The real backend: exec through the OCI runtime, attach through conmon, dial into a netns."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cri_py.streaming import netns_dial
from cri_py.streaming.attach_conn import AttachConnection
from cri_py.streaming.backend import (
    AttachTarget,
    ExecTarget,
    PortForwardTarget,
    StdioSession,
    TerminalSize,
)
from cri_py.streaming.exec_process import ExecProcess


class OciStreamingBackend:
    """`scratch_dir` holds the per-exec process spec and pid files while an exec runs."""

    def __init__(self, scratch_dir: Path) -> None:
        self.scratch_dir = scratch_dir

    async def exec(
        self,
        target: ExecTarget,
        cmd: list[str],
        *,
        tty: bool,
        stdin: bool,
        initial_size: TerminalSize | None,
    ) -> StdioSession:
        return await ExecProcess.start(
            target, cmd, tty=tty, stdin=stdin, initial_size=initial_size, scratch_dir=self.scratch_dir
        )

    async def attach(self, target: AttachTarget) -> StdioSession:
        return await AttachConnection.connect(target)

    async def connect(
        self, target: PortForwardTarget, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await netns_dial.open_connection(target.netns, port)
