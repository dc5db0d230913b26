"""ExecSync closes each pipe once: a fast command's end of output closes its read end, and
the launch must not close that number again (by then it may be another file's).

The runtime is a stand-in script at the one seam (`ExecRuntime.binary`): it starts the
process of the spec detached, writes its pid and exits, as `runc exec --detach` does.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sys
from pathlib import Path

import pytest

from cri_py.oci import exec as exec_module
from cri_py.oci.exec import ExecRuntime, exec_sync

FAKE_RUNTIME = """#!{python}
import json, subprocess, sys
args = sys.argv[1:]
pid_file = args[args.index("--pid-file") + 1]
spec = json.load(open(args[args.index("--process") + 1]))
child = subprocess.Popen(spec["args"], start_new_session=False)
open(pid_file, "w").write(str(child.pid))
"""


def test_exec_sync_closes_each_pipe_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "fake-runtime"
    runtime.write_text(FAKE_RUNTIME.format(python=sys.executable))
    runtime.chmod(0o755)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    how = ExecRuntime(binary=str(runtime), global_args=(), sandbox_pids=False, scratch=scratch)
    closed_twice: list[int] = []
    real_close = os.close

    def watched_close(fd: int) -> None:
        try:
            real_close(fd)
        except OSError as exc:
            if exc.errno == errno.EBADF:
                closed_twice.append(fd)
            raise

    monkeypatch.setattr(exec_module.os, "close", watched_close)

    async def many() -> list[bytes]:
        results = []
        for i in range(20):
            # `echo` ends before the launch has read the pid file: its EOF comes first
            result = await exec_sync(how, "c" * 64, {"args": ["echo", f"probe {i}"]}, 10)
            results.append(result.stdout)
        return results

    outputs = asyncio.run(many())
    assert outputs == [f"probe {i}\n".encode() for i in range(20)]
    assert closed_twice == [], f"fds closed twice: {closed_twice}"
