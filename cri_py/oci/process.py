"""Running short-lived helper processes (runtime calls) without blocking the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
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
        await _kill_group(proc)
        raise DeadlineExceeded(
            f"{os.path.basename(args[0])} {_subcommand(args)} did not finish in {time_limit:g} s and was killed"
        ) from exc
    except BaseException:
        # a cancelled request must not leave a runtime call behind
        await _kill_group(proc)
        raise
    assert proc.returncode is not None
    return Completed(proc.returncode, out, err)


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """The process and whatever it started (its own session): a wrapper script's children too."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await proc.wait()


def _subcommand(args: Sequence[str]) -> str:
    """The first argument that is not an option: `runc --root=x kill ...` -> kill."""
    return next((a for a in args[1:] if not a.startswith("-")), "")
