"""Running short-lived helper processes (runtime calls) without blocking the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from cri_py.errors import DeadlineExceeded


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: bytes

    def error_text(self) -> str:
        text = (self.stderr or self.stdout).decode(errors="replace").strip()
        return text or f"exit status {self.returncode}"


async def run(args: Sequence[str], *, stdin: bytes | None = None, time_limit: float = 60.0) -> Completed:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), time_limit)
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise DeadlineExceeded(f"{' '.join(args[:1])} did not finish in {time_limit:g} s") from exc
    except BaseException:
        # a cancelled request must not leave a runtime call behind
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    assert proc.returncode is not None
    return Completed(proc.returncode, out, err)
