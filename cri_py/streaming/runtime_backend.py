"""The real backend: exec and attach through the container's runtime, dial into a netns."""

from __future__ import annotations

import asyncio

from cri_py.streaming import netns_dial
from cri_py.streaming.backend import AttachTarget, ExecTarget, PortForwardTarget, StdioSession, TerminalSize


class RuntimeStreamingBackend:
    async def exec(
        self,
        target: ExecTarget,
        cmd: list[str],
        *,
        tty: bool,
        stdin: bool,
        initial_size: TerminalSize | None,
    ) -> StdioSession:
        process = dict(target.process_spec, args=list(cmd), terminal=tty)
        return await target.runtime.exec_stream(
            target.container_id, process, stdin=stdin, initial_size=initial_size
        )

    async def attach(self, target: AttachTarget) -> StdioSession:
        return await target.runtime.attach(
            target.container_id, target.bundle, tty=target.tty, stdin=target.stdin
        )

    async def connect(
        self, target: PortForwardTarget, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await netns_dial.open_connection(target.netns, port)
