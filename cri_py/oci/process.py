"""Running short-lived helper processes (runtime calls) without blocking the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
    """Run a runtime call to its end, `time_limit` at most (the daemon's own bound, also when
    the client set no deadline). The call runs in a session of its own: whatever ends it
    early (the limit, the request's deadline or cancellation, an error) kills that session's
    whole process group and reaps the runtime before the exception goes on."""
    proc = await spawn(
        args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), time_limit)
    except TimeoutError as exc:
        await kill_group(proc)
        raise DeadlineExceeded(
            f"{os.path.basename(args[0])} {_subcommand(args)} did not finish in {time_limit:g} s and was killed"
        ) from exc
    except BaseException:
        # a cancelled request must not leave a runtime call behind
        await kill_group(proc)
        raise
    assert proc.returncode is not None
    return Completed(proc.returncode, out, err)


async def spawn(args: Sequence[str], **options: Any) -> asyncio.subprocess.Process:
    """asyncio's create_subprocess_exec in a new session (for any helper program the daemon runs:
    runtimes, CNI plugins), whose start is never cancelled:
    asyncio, cancelled while it connects a new process's pipes, kills that process alone, and
    then waits for its pipes to close, which the children it started already (a wrapper's,
    runsc's, runc's init) hold open: they run on and the request never ends. A cancellation
    that comes meanwhile lets the start finish, kills the whole group, then goes on."""
    starting = asyncio.ensure_future(asyncio.create_subprocess_exec(*args, start_new_session=True, **options))
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        # shielded too: a second cancellation must not cut the kill short
        await asyncio.shield(_kill_once_started(starting))
        raise


async def _kill_once_started(starting: asyncio.Future[asyncio.subprocess.Process]) -> None:
    try:
        proc = await starting
    except Exception:
        return  # it never ran (no such binary, ...): nothing to kill
    await kill_group(proc)


async def kill_group(proc: asyncio.subprocess.Process) -> None:
    """The process and whatever it started (its own session, group id = its pid): a wrapper
    script's children too. No kill of the pid alone after it: asyncio's child watcher may have
    reaped it meanwhile (its number free for another process), and the kill's own poll would
    take the exit status from the watcher."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()


def _subcommand(args: Sequence[str]) -> str:
    """The first argument that is not an option: `runc --root=x kill ...` -> kill."""
    return next((a for a in args[1:] if not a.startswith("-")), "")
