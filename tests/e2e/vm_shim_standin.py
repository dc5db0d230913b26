"""A stand-in for a VM runtime's containerd shim v2 (Kata's containerd-shim-kata-v2), of the
suite's own: there is no Kata on these machines. It speaks the same protocol (the `start`
command, the ttrpc Task service), groups a pod's containers into one shim as a VM shim does,
and writes every call it gets to a journal, which the tests read. What it runs it runs on the
host in a chroot of the bundle's root (no VM, no namespaces): enough for logs, exec and exits.

    vm_shim_standin.py JOURNAL_DIR -namespace NS -address A -publish-binary B -id ID start
    vm_shim_standin.py JOURNAL_DIR serve SOCKET GROUP
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cri_py.api import shimv2_pb2 as pb  # noqa: E402

HEADER = struct.Struct(">IIBB")
TYPE_KEY = "io.kubernetes.cri.container-type"
SANDBOX_KEY = "io.kubernetes.cri.sandbox-id"


def journal(directory: Path, entry: dict[str, Any]) -> None:
    with open(directory / "journal.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")


def start(directory: Path, flags: dict[str, str]) -> int:
    spec = json.loads(Path("config.json").read_text())
    annotations = spec.get("annotations", {})
    shim_id = flags["-id"]
    group = annotations.get(SANDBOX_KEY, shim_id) if annotations.get(TYPE_KEY) == "container" else shim_id
    sock = directory / f"{group[:16]}.sock"
    journal(directory, {"call": "start", "id": shim_id, "group": group, "cwd": os.getcwd(), **flags})
    if not sock.exists():
        subprocess.Popen(
            [sys.executable, __file__, str(directory), "serve", str(sock), group],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open("log", "ab"),  # noqa: SIM115 - the server's own log, as a shim's
            start_new_session=True,
            cwd="/",
        )
        deadline = time.monotonic() + 10
        while not sock.exists():
            if time.monotonic() > deadline:
                print("stand-in shim did not come up", file=sys.stderr)
                return 1
            time.sleep(0.01)
    print(f"unix://{sock}", end="")
    return 0


class Process:
    def __init__(self, spec: dict[str, Any], root: str, stdio: tuple[str, str, str], sandbox: bool) -> None:
        self.spec = spec
        self.root = root
        self.stdio = stdio
        self.sandbox = sandbox
        self.proc: asyncio.subprocess.Process | None = None
        self.exit_status: int | None = None
        self.exited = asyncio.Event()

    async def run(self) -> int:
        if self.sandbox:  # the "VM": nothing runs until it is killed
            return os.getpid()
        files = [
            os.open(path, flags) if path else os.open(os.devnull, flags)
            for path, flags in zip(self.stdio, (os.O_RDONLY, os.O_WRONLY, os.O_WRONLY), strict=True)
        ]
        root, cwd = self.root, self.spec.get("cwd", "/")

        def enter() -> None:
            os.chroot(root)
            os.chdir(cwd)

        env = dict(item.split("=", 1) for item in self.spec.get("env", []))
        self.proc = await asyncio.create_subprocess_exec(
            *self.spec["args"],
            stdin=files[0],
            stdout=files[1],
            stderr=files[2],
            env=env,
            preexec_fn=enter,
            start_new_session=True,
        )
        for fd in files:
            os.close(fd)
        asyncio.ensure_future(self._reap())
        return self.proc.pid

    async def _reap(self) -> None:
        assert self.proc is not None
        code = await self.proc.wait()
        self.exit_status = 128 - code if code < 0 else code
        self.exited.set()

    def kill(self, number: int, everything: bool = False) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                if everything:
                    os.killpg(self.proc.pid, number)
                else:
                    os.kill(self.proc.pid, number)
        elif self.sandbox and not self.exited.is_set():
            self.exit_status = 128 + number
            self.exited.set()


class Shim:
    def __init__(self, directory: Path, sock: Path) -> None:
        self.directory = directory
        self.sock = sock
        self.tasks: dict[str, Process] = {}
        self.execs: dict[tuple[str, str], Process] = {}
        self.done = asyncio.Event()

    def process(self, task_id: str, exec_id: str) -> Process:
        found = self.execs.get((task_id, exec_id)) if exec_id else self.tasks.get(task_id)
        if found is None:
            raise KeyError(f"{task_id} {exec_id}".strip())
        return found

    async def handle(self, method: str, payload: bytes) -> bytes:
        if method == "Create":
            req = pb.CreateTaskRequest.FromString(payload)
            spec = json.loads((Path(req.bundle) / "config.json").read_text())
            annotations = spec.get("annotations", {})
            journal(self.directory, {"call": "Create", "id": req.id, "bundle": req.bundle,
                                     "type": annotations.get(TYPE_KEY), "sandbox": annotations.get(SANDBOX_KEY),
                                     "stdout": req.stdout, "stderr": req.stderr, "stdin": req.stdin,
                                     "terminal": req.terminal})  # fmt: skip
            if req.terminal:
                raise RuntimeError("the stand-in has no terminals")
            root = spec["root"]["path"]
            root = root if os.path.isabs(root) else str(Path(req.bundle) / root)
            self.tasks[req.id] = Process(
                spec["process"],
                root,
                (req.stdin, req.stdout, req.stderr),
                annotations.get(TYPE_KEY) == "sandbox",
            )
            return pb.CreateTaskResponse(pid=os.getpid()).SerializeToString()
        if method == "Exec":
            req = pb.ExecProcessRequest.FromString(payload)
            journal(self.directory, {"call": "Exec", "id": req.id, "exec_id": req.exec_id,
                                     "spec_type": req.spec.type_url})  # fmt: skip
            task = self.process(req.id, "")
            self.execs[(req.id, req.exec_id)] = Process(
                json.loads(req.spec.value), task.root, (req.stdin, req.stdout, req.stderr), False
            )
            return pb.Empty().SerializeToString()
        if method == "Start":
            req = pb.StartRequest.FromString(payload)
            journal(self.directory, {"call": "Start", "id": req.id, "exec_id": req.exec_id})
            pid = await self.process(req.id, req.exec_id).run()
            return pb.StartResponse(pid=pid).SerializeToString()
        if method == "Wait":
            req = pb.WaitRequest.FromString(payload)
            journal(self.directory, {"call": "Wait", "id": req.id, "exec_id": req.exec_id})
            proc = self.process(req.id, req.exec_id)
            await proc.exited.wait()
            return pb.WaitResponse(exit_status=proc.exit_status or 0).SerializeToString()
        if method == "Kill":
            req = pb.KillRequest.FromString(payload)
            journal(self.directory, {"call": "Kill", "id": req.id, "exec_id": req.exec_id,
                                     "signal": req.signal, "all": req.all})  # fmt: skip
            self.process(req.id, req.exec_id).kill(req.signal, req.all)
            return pb.Empty().SerializeToString()
        if method == "Delete":
            req = pb.DeleteRequest.FromString(payload)
            journal(self.directory, {"call": "Delete", "id": req.id, "exec_id": req.exec_id})
            proc = self.process(req.id, req.exec_id)
            if req.exec_id:
                del self.execs[(req.id, req.exec_id)]
            else:
                del self.tasks[req.id]
            return pb.DeleteResponse(exit_status=proc.exit_status or 0).SerializeToString()
        if method == "Connect":
            req = pb.ConnectRequest.FromString(payload)
            journal(self.directory, {"call": "Connect", "id": req.id})
            return pb.ConnectResponse(shim_pid=os.getpid()).SerializeToString()
        if method == "Shutdown":
            req = pb.ShutdownRequest.FromString(payload)
            journal(self.directory, {"call": "Shutdown", "id": req.id, "tasks": sorted(self.tasks)})
            if not self.tasks:
                self.done.set()
            return pb.Empty().SerializeToString()
        journal(self.directory, {"call": method})
        return pb.Empty().SerializeToString()

    async def serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                length, stream, _kind, _flags = HEADER.unpack(await reader.readexactly(HEADER.size))
                request = pb.TtrpcRequest.FromString(await reader.readexactly(length))
                asyncio.ensure_future(self.answer(writer, stream, request))

    async def answer(self, writer: asyncio.StreamWriter, stream: int, request: pb.TtrpcRequest) -> None:
        response = pb.TtrpcResponse()
        try:
            response.payload = await self.handle(request.method, request.payload)
        except KeyError as exc:
            response.status.code, response.status.message = 5, f"not found: {exc}"
        except Exception as exc:  # noqa: BLE001 - every failure is the caller's answer
            response.status.code, response.status.message = 2, str(exc)
        body = response.SerializeToString()
        writer.write(HEADER.pack(len(body), stream, 2, 0) + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    async def main(self) -> None:
        server = await asyncio.start_unix_server(self.serve_client, path=str(self.sock))
        await self.done.wait()
        await asyncio.sleep(0.05)  # the Shutdown answer goes out first
        server.close()
        for proc in [*self.tasks.values(), *self.execs.values()]:
            proc.kill(signal.SIGKILL, everything=True)
        self.sock.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    directory = Path(argv[1])
    if argv[2] == "serve":
        asyncio.run(Shim(directory, Path(argv[3])).main())
        return 0
    flags = dict(zip(argv[2:-1:2], argv[3:-1:2], strict=False))
    if argv[-1] != "start":
        journal(directory, {"call": argv[-1], **flags})
        return 0
    return start(directory, flags)


if __name__ == "__main__":
    socket.setdefaulttimeout(None)
    raise SystemExit(main(sys.argv))
