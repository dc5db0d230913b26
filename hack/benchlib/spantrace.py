"""Run cri-py with every subprocess, to_thread call and slow loop callback written down as a span.

    python hack/benchlib/spantrace.py <cri-py executable> serve --config FILE   (SPAN_OUT=file.jsonl)

A development wrapper for `hack/bench --spans`: it patches asyncio in the daemon's own process
before cri_py is imported, so the daemon's code is unchanged. Each line of SPAN_OUT is
[kind, name, start, end] with kind "proc" (spawn to exit), "thread" (asyncio.to_thread) or
"block" (an event-loop callback that ran longer than 3 ms: the loop could not serve anything else).
"""

from __future__ import annotations

import asyncio
import asyncio.events
import json
import os
import sys
import threading
import time
from typing import Any

_out = open(os.environ["SPAN_OUT"], "a", buffering=1)  # noqa: SIM115 - lives as long as the daemon
BLOCK_S = 0.003


def _emit(kind: str, name: str, start: float, end: float) -> None:
    _out.write(json.dumps([kind, name, start, end]) + "\n")


def _proc_name(program: Any, args: tuple[Any, ...]) -> str:
    words = [os.path.basename(str(program))]
    # the subcommand and flags say what ran; ids and paths would make every span unique
    words += [str(a) for a in args if not str(a).startswith("/") and len(str(a)) < 20][:3]
    return " ".join(words)


def _callback_name(callback: Any) -> str:
    """For a task step: the coroutine and the line it suspended at (the blocking code ran just before)."""
    task = getattr(callback, "__self__", None)
    get_coro = getattr(task, "get_coro", None)
    if get_coro is None:
        return str(getattr(callback, "__qualname__", repr(callback)))[:80]
    coro = get_coro()
    # walk down the await chain to the innermost coroutine that is suspended
    while getattr(coro, "cr_await", None) is not None and hasattr(coro.cr_await, "cr_frame"):
        coro = coro.cr_await
    frame = getattr(coro, "cr_frame", None)
    if frame is None:
        return f"task {getattr(get_coro(), '__qualname__', '?')} (finished)"
    where = frame.f_code.co_filename.rsplit("cri_py/", 1)[-1]
    return f"{coro.__qualname__} ({where}:{frame.f_lineno})"


def install() -> None:
    spawn = asyncio.create_subprocess_exec

    async def create_subprocess_exec(program: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.time()
        proc = await spawn(program, *args, **kwargs)
        name = _proc_name(program, args)
        wait = proc.wait

        async def timed_wait() -> int:
            code = await wait()
            _emit("proc", name, start, time.time())
            return code

        proc.wait = timed_wait  # type: ignore[method-assign]  # communicate() waits through it too
        return proc

    asyncio.create_subprocess_exec = create_subprocess_exec
    to_thread = asyncio.to_thread

    async def timed_to_thread(func: Any, /, *args: Any, **kwargs: Any) -> Any:
        start = time.time()
        try:
            return await to_thread(func, *args, **kwargs)
        finally:
            _emit("thread", getattr(func, "__qualname__", repr(func)), start, time.time())

    asyncio.to_thread = timed_to_thread
    run = asyncio.events.Handle._run

    def timed_run(self: asyncio.events.Handle) -> None:
        start = time.time()
        run(self)
        took = time.time() - start
        # only the daemon's own loop: pyroute2 runs private loops in its worker threads
        if took > BLOCK_S and threading.current_thread() is threading.main_thread():
            _emit("block", _callback_name(getattr(self, "_callback", None)), start, start + took)

    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]


def experiments() -> None:
    """A knob to try without editing the daemon: SPAN_SWITCH_INTERVAL (seconds, the GIL's)."""
    if os.environ.get("SPAN_SWITCH_INTERVAL"):
        sys.setswitchinterval(float(os.environ["SPAN_SWITCH_INTERVAL"]))


if __name__ == "__main__":
    install()
    experiments()
    sys.argv = ["cri-py", *sys.argv[2:]]
    from cri_py.cli import main

    raise SystemExit(main())
