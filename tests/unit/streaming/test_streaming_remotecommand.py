"""What the error channel carries, and how the resize channel is decoded."""

from __future__ import annotations

import asyncio
import json

from cri_py.streaming.backend import TerminalSize
from cri_py.streaming.channels import ResizeReader
from cri_py.streaming.remotecommand import error_status, exit_status


def test_v4_status_for_exit_codes() -> None:
    assert exit_status(4, 0) == b'{"status":"Success"}'
    assert json.loads(exit_status(5, 3)) == {
        "status": "Failure",
        "message": "command terminated with non-zero exit code: exit status 3",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }


def test_pre_v4_status_is_plain_text_and_empty_on_success() -> None:
    assert exit_status(3, 0) == b""
    assert exit_status(2, 7) == b"command terminated with non-zero exit code: exit status 7"
    assert error_status(1, "boom") == b"boom"


def test_internal_errors() -> None:
    status = json.loads(error_status(4, "runc failed"))
    assert status["reason"] == "InternalError" and status["code"] == 500
    assert status["message"] == "Internal error occurred: runc failed"


class Chunks:
    def __init__(self, *chunks: bytes) -> None:
        self._chunks = list(chunks)

    async def read(self) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""


def sizes(*chunks: bytes) -> list[TerminalSize]:
    async def main() -> list[TerminalSize]:
        reader = ResizeReader(Chunks(*chunks))
        out = []
        while (size := await reader.next()) is not None:
            out.append(size)
        return out

    return asyncio.run(main())


def test_resize_stream_split_and_joined_objects() -> None:
    assert sizes(b'{"Width":80,', b'"Height":24}\n{"Width":100,"Height":50}\n') == [
        TerminalSize(80, 24),
        TerminalSize(100, 50),
    ]
    # WebSocket resize messages come one object each, without newlines
    assert sizes(b'{"Width":1,"Height":2}', b'{"Width":3,"Height":4}') == [
        TerminalSize(1, 2),
        TerminalSize(3, 4),
    ]


def test_resize_ignores_odd_objects_and_stops_on_garbage() -> None:
    assert sizes(b'[1]\n{"Width":"x"}\n{"Width":5,"Height":6}\n') == [TerminalSize(5, 6)]
    assert sizes(b"not json" * 10000) == []
