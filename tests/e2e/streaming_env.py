"""Hand-made targets for the streaming e2e tests: a runc container, a conmon-run container, a netns.

They exercise the streaming server against the real binaries without the rest of the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cri_py.config.model import RuntimeHandler
from cri_py.oci.runtime import OciRuntime
from cri_py.streaming.backend import AttachTarget, ExecTarget, PortForwardTarget
from cri_py.streaming.runtime_backend import RuntimeStreamingBackend
from cri_py.streaming.server import StreamingServer

RUNC = "/usr/sbin/runc"
RUNSC = "/usr/bin/runsc"
CONMON = "/usr/bin/conmon"
BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "cat", "echo", "sleep", "stty", "nc", "httpd", "ls", "true", "tty", "head", "printf", "ps")

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def make_bundle(base: Path, args: list[str], *, terminal: bool = False) -> dict[str, Any]:
    rootfs = base / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    for d in ("proc", "sys", "dev", "tmp", "etc"):
        (rootfs / d).mkdir()
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in APPLETS:
        os.link(rootfs / "bin" / "busybox", rootfs / "bin" / applet)
    subprocess.run([RUNC, "spec", "--bundle", str(base)], check=True)
    spec: dict[str, Any] = json.loads((base / "config.json").read_text())
    spec["process"]["args"] = args
    spec["process"]["terminal"] = terminal
    spec["process"]["env"] = ["PATH=/bin", "TERM=xterm"]
    spec["root"] = {"path": str(rootfs), "readonly": False}
    # one level only: runc removes the leaf it made, a shared parent would stay behind
    spec["linux"]["cgroupsPath"] = f"/cri-py-e2e-stream-{uuid.uuid4().hex[:12]}"
    (base / "config.json").write_text(json.dumps(spec))
    return spec


@dataclass
class RuncContainer:
    id: str
    root: Path
    bundle: Path
    spec: dict[str, Any]
    runtime: str = RUNC
    global_args: tuple[str, ...] = ()

    def oci_runtime(self) -> OciRuntime:
        """The daemon's runtime code for this hand-made container (its exec scratch beside it)."""
        handler = RuntimeHandler(
            name=Path(self.runtime).name,
            path=Path(self.runtime),
            root=self.root,
            runtime_args=self.global_args,
            sandbox_pids=self.runtime == RUNSC,
        )
        return OciRuntime(handler, conmon=Path(CONMON), run_dir=self.run_dir)

    @property
    def run_dir(self) -> Path:
        return self.root.parent / "run"

    @property
    def exec_scratch(self) -> Path:
        """Where the runtime keeps an exec's spec, pid and console socket files while it runs."""
        return self.run_dir / "exec"

    def exec_target(self) -> ExecTarget:
        return ExecTarget(self.oci_runtime(), self.id, self.spec["process"])

    def processes(self) -> list[str]:
        """Command lines of the processes in the container (via runc ps)."""
        out = subprocess.run(
            [self.runtime, "--root", str(self.root), *self.global_args, "ps", "--format", "json", self.id],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        pids = json.loads(out) or []
        cmds = []
        for pid in pids:
            try:
                cmds.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
            except OSError:
                pass
        return cmds


def _runc_cleanup(root: Path, cid: str, runtime: str = RUNC, global_args: tuple[str, ...] = ()) -> None:
    base = [runtime, "--root", str(root), *global_args]
    subprocess.run([*base, "kill", cid, "KILL"], capture_output=True)
    for _ in range(50):
        r = subprocess.run([*base, "delete", "--force", cid], capture_output=True)
        if r.returncode == 0:
            break
        time.sleep(0.1)


@contextmanager
def runc_container(tmp: Path, runtime: str = RUNC) -> Iterator[RuncContainer]:
    """A busybox container running `sleep` (exec target), started with `<runtime> run -d`.

    runsc (gVisor) runs without its own network stack or cgroups here: only exec is tested.
    """
    cid = f"crie2es-{uuid.uuid4().hex[:10]}"
    bundle, root = tmp / "bundle", tmp / "runc-root"
    bundle.mkdir()
    spec = make_bundle(bundle, ["sleep", "100000"])
    global_args: tuple[str, ...] = ("--network=none", "--ignore-cgroups") if runtime == RUNSC else ()
    try:
        subprocess.run(
            [runtime, "--root", str(root), *global_args, "run", "--detach", "--bundle", str(bundle), cid],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            # the detached container inherits runc's stdio: a pipe here would never reach EOF
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        yield RuncContainer(cid, root, bundle, spec, runtime, global_args)
    finally:
        _runc_cleanup(root, cid, runtime, global_args)


@dataclass
class ConmonContainer:
    id: str
    attach: AttachTarget
    exit_file: Path


@contextmanager
def conmon_container(tmp: Path, args: list[str], *, tty: bool) -> Iterator[ConmonContainer]:
    """A container created and started under conmon as CRI-O does it (protocol-facts §1.1/1.2)."""
    cid = f"crie2ec-{uuid.uuid4().hex[:10]}"
    run_dir = tmp / "crun"
    runtime = OciRuntime(
        RuntimeHandler(name="runc", path=Path(RUNC), root=tmp / "crunc-root"),
        conmon=Path(CONMON),
        run_dir=run_dir,
    )
    bundle, root, exits, sockdir = tmp / "cbundle", runtime.root, runtime.exits_dir, runtime.socket_dir
    for d in (bundle, exits, sockdir):
        d.mkdir(parents=True)
    make_bundle(bundle, args, terminal=tty)
    sync_r, sync_w = os.pipe()
    start_parent, start_child = socket.socketpair()
    argv = [
        CONMON,
        "-b", str(bundle), "-c", cid, "-u", cid, "-n", cid,
        "--exit-dir", str(exits),
        "-l", str(tmp / "ctr.log"),
        "-P", str(bundle / "conmon-pidfile"),
        "-p", str(bundle / "pidfile"),
        "--persist-dir", str(bundle),
        "-r", RUNC,
        "--runtime-arg", f"--root={root}",
        "--socket-dir-path", str(sockdir),
        "--log-level", "error",
        "-i",
    ]  # fmt: skip
    if tty:
        argv.append("-t")
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "_OCI_SYNCPIPE": str(sync_w),
        "_OCI_STARTPIPE": str(start_child.fileno()),
    }
    sync_file = os.fdopen(sync_r, "rb")
    try:
        proc = subprocess.Popen(
            argv,
            cwd=bundle,
            env=env,
            pass_fds=(sync_w, start_child.fileno()),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(sync_w)
        start_child.close()
        start_parent.sendall(b"\0")
        assert proc.wait(timeout=30) == 0
        line = json.loads(sync_file.readline())
        assert line.get("pid", -1) > 0, line
        attach = AttachTarget(runtime, cid, bundle, tty=tty, stdin=True, stdin_once=True)
        yield ConmonContainer(cid, attach, exits / cid)
    finally:
        start_parent.close()
        sync_file.close()
        _runc_cleanup(root, cid)
        conmon_pid = bundle / "conmon-pidfile"
        if conmon_pid.exists():
            pid = int(conmon_pid.read_text())
            # conmon is orphaned by design; whoever reaps orphans here may be slow, so a
            # zombie counts as gone.
            with contextlib.suppress(TimeoutError):
                wait_until(lambda: _gone_or_zombie(pid), 5)


def _gone_or_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def runc_start(root: Path, cid: str) -> None:
    subprocess.run([RUNC, "--root", str(root), "start", cid], check=True, capture_output=True)


@contextmanager
def netns_with_server(script: str) -> Iterator[tuple[PortForwardTarget, subprocess.Popen[bytes]]]:
    """A fresh network namespace (lo up) running a python server `script` inside it."""
    name = f"crie2e-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", name, "python3", "-u", "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        yield PortForwardTarget(Path("/run/netns") / name), proc
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "netns", "delete", name], check=False)


async def start_server(scratch: Path, **kwargs: Any) -> StreamingServer:
    server = StreamingServer(RuntimeStreamingBackend(), scratch_dir=scratch, **kwargs)
    await server.start()
    return server


def wait_until(predicate: Callable[[], bool], seconds: float = 10) -> None:
    """Poll `predicate` (a sync check: call through asyncio.to_thread from async code)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def threads_in_foreign_netns() -> list[str]:
    """Threads of this process whose network namespace is not the process's own."""
    own = os.readlink("/proc/self/ns/net")
    found = []
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/task/{tid}/ns/net") != own:
                found.append(tid)
    return found


def netns_dial_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "netns-dial"]
