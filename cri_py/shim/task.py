"""A containerd shim v2 binary: starting it, and its Task service over ttrpc.

`<shim> -namespace NS -address ADDR -publish-binary BIN -id ID start`, run in the bundle
directory, leaves the long-lived shim running and prints the ttrpc address it serves. A VM
shim (Kata's) groups a pod's containers: asked to start for a container annotated with a
sandbox id, it answers the address of that sandbox's shim. The shim appends its own log to
`<bundle>/log`, a regular file here (containerd reads a FIFO of that name; the shim only
opens it for writing).

The shim publishes events (task exit, OOM) to ADDR through BIN; cri-py needs none of them
(Wait answers exits), so BIN is `true`, and ADDR names a socket nobody serves.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from google.protobuf import any_pb2
from google.protobuf.message import Message

from cri_py.api import shimv2_pb2 as pb
from cri_py.errors import DeadlineExceeded, Internal, NotFound
from cri_py.shim.ttrpc import NOT_FOUND, Client, ConnectionLost, TtrpcError

SERVICE = "containerd.task.v2.Task"
NAMESPACE = "cri-py"
# how long a shim's `start` may take (a VM shim boots nothing yet; it only forks)
START_TIMEOUT = 60.0
# how long one call may take (Create and Start boot the VM or the container)
CALL_TIMEOUT = 120.0
# how long a shim may take to exit once it answered Shutdown
SHUTDOWN_WAIT = 5.0
PROCESS_SPEC_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Process"
RESOURCES_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"


async def start_shim(binary: str, shim_id: str, bundle: Path, events_address: Path) -> str:
    """Run the shim's `start` for `shim_id` in `bundle`; the address it serves."""
    (bundle / "log").touch()
    proc = await asyncio.create_subprocess_exec(
        binary,
        "-namespace", NAMESPACE,
        "-address", str(events_address),
        "-publish-binary", "/bin/true",
        "-id", shim_id,
        "start",
        cwd=str(bundle),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), START_TIMEOUT)
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise DeadlineExceeded(f"{binary} start did not answer in {START_TIMEOUT:g} s") from exc
    address = out.decode(errors="replace").strip()
    if proc.returncode != 0 or not address:
        detail = err.decode(errors="replace").strip() or f"exit status {proc.returncode}"
        raise Internal(f"{binary} start: {detail}")
    return address


def socket_path(address: str) -> str:
    return address.removeprefix("unix://")


class TaskClient:
    """The Task service of one shim; a lost connection is made again on the next call."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> Client:
        async with self._lock:
            if self._client is None or self._client.closed:
                self._client = await Client.connect(socket_path(self.address))
            return self._client

    async def _call(
        self, method: str, request: Message, response: Message, time_limit: float | None
    ) -> Message:
        client = await self._connection()
        try:
            return await client.call(SERVICE, method, request, response, time_limit)
        except TtrpcError as exc:
            if exc.code == NOT_FOUND:
                raise NotFound(f"shim {method}: {exc.message}") from exc
            raise Internal(f"shim {method}: {exc.message}") from exc
        except TimeoutError as exc:
            raise DeadlineExceeded(f"shim {method} did not answer in {time_limit} s") from exc

    async def connect(self, task_id: str) -> pb.ConnectResponse:
        out = await self._call("Connect", pb.ConnectRequest(id=task_id), pb.ConnectResponse(), 10.0)
        assert isinstance(out, pb.ConnectResponse)
        return out

    async def create(self, request: pb.CreateTaskRequest) -> int:
        out = await self._call("Create", request, pb.CreateTaskResponse(), CALL_TIMEOUT)
        assert isinstance(out, pb.CreateTaskResponse)
        return out.pid

    async def start(self, task_id: str, exec_id: str = "") -> int:
        out = await self._call(
            "Start", pb.StartRequest(id=task_id, exec_id=exec_id), pb.StartResponse(), CALL_TIMEOUT
        )
        assert isinstance(out, pb.StartResponse)
        return out.pid

    async def kill(
        self, task_id: str, signal: int, *, exec_id: str = "", all_processes: bool = False
    ) -> None:
        request = pb.KillRequest(id=task_id, exec_id=exec_id, signal=signal, all=all_processes)
        await self._call("Kill", request, pb.Empty(), 30.0)

    async def wait(self, task_id: str, exec_id: str = "") -> pb.WaitResponse:
        """Until the process exits (no time limit: a container may run for months)."""
        out = await self._call("Wait", pb.WaitRequest(id=task_id, exec_id=exec_id), pb.WaitResponse(), None)
        assert isinstance(out, pb.WaitResponse)
        return out

    async def delete(self, task_id: str, exec_id: str = "") -> None:
        await self._call("Delete", pb.DeleteRequest(id=task_id, exec_id=exec_id), pb.DeleteResponse(), 60.0)

    async def state(self, task_id: str, exec_id: str = "") -> pb.StateResponse:
        out = await self._call(
            "State", pb.StateRequest(id=task_id, exec_id=exec_id), pb.StateResponse(), 10.0
        )
        assert isinstance(out, pb.StateResponse)
        return out

    async def exec(self, request: pb.ExecProcessRequest) -> None:
        await self._call("Exec", request, pb.Empty(), CALL_TIMEOUT)

    async def resize(self, task_id: str, exec_id: str, width: int, height: int) -> None:
        request = pb.ResizePtyRequest(id=task_id, exec_id=exec_id, width=width, height=height)
        await self._call("ResizePty", request, pb.Empty(), 10.0)

    async def close_stdin(self, task_id: str, exec_id: str = "") -> None:
        await self._call(
            "CloseIO", pb.CloseIORequest(id=task_id, exec_id=exec_id, stdin=True), pb.Empty(), 10.0
        )

    async def update(self, task_id: str, resources_json: bytes) -> None:
        request = pb.UpdateTaskRequest(
            id=task_id, resources=any_pb2.Any(type_url=RESOURCES_TYPE, value=resources_json)
        )
        await self._call("Update", request, pb.Empty(), 30.0)

    async def shutdown(self, task_id: str) -> bool:
        """Ask the shim to exit and wait (up to SHUTDOWN_WAIT) for it to close its connection,
        which it does when it exits: once this returns True the shim has let go of its socket
        and of what it ran. Its connection closing is also the answer it may give instead."""
        try:
            await self._call("Shutdown", pb.ShutdownRequest(id=task_id), pb.Empty(), 10.0)
        except (ConnectionLost, Internal, NotFound):
            pass
        client = self._client
        return client is None or await client.wait_closed(SHUTDOWN_WAIT)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def process_spec(process_json: bytes) -> any_pb2.Any:
    """An OCI process spec as containerd's typeurl packs it (JSON)."""
    return any_pb2.Any(type_url=PROCESS_SPEC_TYPE, value=process_json)
