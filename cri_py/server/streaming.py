"""Exec, Attach, PortForward: validate, resolve the target, hand back a single-use URL.

The streaming itself happens later on the streaming server (`cri_py.streaming`), which
gets everything it needs from the request cached here: the URL's token is all a client
brings.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cri_py.api import api_pb2
from cri_py.errors import InvalidArgument
from cri_py.server.context import Context
from cri_py.streaming.backend import PortForwardTarget
from cri_py.streaming.requests import AttachRequest, ExecRequest, PortForwardRequest

if TYPE_CHECKING:
    from cri_py.services import Services

# A host-network pod forwards to the host's own localhost.
HOST_NETNS = Path("/proc/self/ns/net")


def _check_stdio(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> None:
    if tty and stderr:
        raise InvalidArgument("tty and stderr cannot both be true")
    if not (stdin or stdout or stderr):
        raise InvalidArgument("one of stdin, stdout, or stderr must be set")


class StreamingHandlers:
    services: Services

    async def Exec(self, request: api_pb2.ExecRequest, context: Context) -> api_pb2.ExecResponse:
        if not request.container_id:
            raise InvalidArgument("missing required container_id")
        if not request.cmd:
            raise InvalidArgument("exec needs a command")
        _check_stdio(request.stdin, request.stdout, request.stderr, request.tty)
        server = self.services.streaming
        # Raises NotFound / FailedPrecondition for unknown or not running containers.
        target = self.services.containers.exec_target(request.container_id)
        cached = ExecRequest(
            target,
            tuple(request.cmd),
            tty=request.tty,
            stdin=request.stdin,
            stdout=request.stdout,
            stderr=request.stderr,
        )
        return api_pb2.ExecResponse(url=server.url_for(cached))

    async def Attach(self, request: api_pb2.AttachRequest, context: Context) -> api_pb2.AttachResponse:
        if not request.container_id:
            raise InvalidArgument("missing required container_id")
        _check_stdio(request.stdin, request.stdout, request.stderr, request.tty)
        server = self.services.streaming
        target = self.services.containers.attach_target(request.container_id)
        cached = AttachRequest(
            target,
            tty=request.tty,
            stdin=request.stdin,
            stdout=request.stdout,
            stderr=request.stderr,
        )
        return api_pb2.AttachResponse(url=server.url_for(cached))

    async def PortForward(
        self, request: api_pb2.PortForwardRequest, context: Context
    ) -> api_pb2.PortForwardResponse:
        if not request.pod_sandbox_id:
            raise InvalidArgument("missing required pod_sandbox_id")
        for port in request.port:
            if not 0 < port < 65536:
                raise InvalidArgument(f"invalid port {port}")
        server = self.services.streaming
        pod = self.services.sandboxes.require_ready(request.pod_sandbox_id)
        netns = Path(pod.netns_path) if pod.netns_path else HOST_NETNS
        cached = PortForwardRequest(PortForwardTarget(Path(netns)), pod.id, tuple(request.port))
        return api_pb2.PortForwardResponse(url=server.url_for(cached))
