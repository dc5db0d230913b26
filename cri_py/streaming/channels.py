"""Transport-neutral byte channels: a SPDY stream and a WebSocket channel look the same."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

from cri_py.streaming.backend import TerminalSize


class InChannel(Protocol):
    async def read(self) -> bytes:
        """Next chunk; b"" at end of input."""
        ...


class OutChannel(Protocol):
    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


@dataclass
class CommandChannels:
    """The channels of one exec/attach session, as negotiated with the client.

    `version` is the remotecommand protocol: 1 for `channel.k8s.io`, 2..5 for `vN.channel.k8s.io`.
    """

    version: int
    error: OutChannel
    stdin: InChannel | None = None
    stdout: OutChannel | None = None
    stderr: OutChannel | None = None
    resize: InChannel | None = None


class ResizeReader:
    """Decodes the resize channel: a stream of JSON objects like {"Width":80,"Height":24}."""

    def __init__(self, channel: InChannel) -> None:
        self._channel = channel
        self._buf = ""
        self._decoder = json.JSONDecoder()

    async def next(self) -> TerminalSize | None:
        """The next size; None at end of the channel or on garbage (which ends resizing)."""
        while True:
            text = self._buf.lstrip()
            if text:
                try:
                    obj, end = self._decoder.raw_decode(text)
                except json.JSONDecodeError:
                    obj, end = None, -1
                if end >= 0:
                    self._buf = text[end:]
                    if isinstance(obj, dict):
                        width, height = obj.get("Width", 0), obj.get("Height", 0)
                        if isinstance(width, int) and isinstance(height, int):
                            return TerminalSize(width, height)
                    continue
            data = await self._channel.read()
            if not data:
                return None
            self._buf = text + data.decode(errors="replace")
            if len(self._buf) > 65536:
                return None
