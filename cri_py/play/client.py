"""A CRI v1 client over a unix socket, as kubelet's remote runtime/image services use it."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import grpc

from cri_py.api import api_pb2_grpc
from cri_py.errors import InvalidArgument

MAX_MESSAGE = 16 * 1024 * 1024  # kubelet's cri-client receive limit
DEFAULT_ENDPOINT = "unix:///run/cri-py/cri-py.sock"


def channel_target(endpoint: str) -> str:
    """`unix:///path` or a bare `/path` -> grpc's unix target."""
    if endpoint.startswith("unix://"):
        path = endpoint.removeprefix("unix://")
    elif endpoint.startswith("/"):
        path = endpoint
    else:
        raise InvalidArgument(f"--endpoint {endpoint!r}: only unix:///path endpoints are supported")
    return f"unix://{path}"


class CriClient:
    """Runtime and image stubs on one channel; use as an async context manager."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._channel = grpc.aio.insecure_channel(
            channel_target(endpoint),
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE),
            ],
        )
        self.runtime: Any = api_pb2_grpc.RuntimeServiceStub(self._channel)
        self.image: Any = api_pb2_grpc.ImageServiceStub(self._channel)

    async def __aenter__(self) -> CriClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._channel.close()
