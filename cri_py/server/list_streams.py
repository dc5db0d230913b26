"""The streaming List RPCs: the unary twins' answers, cut into messages of a bounded size.

Each item is in exactly one message, no message is empty, and the stream ends (EOF) after the
last one: an empty list sends no message at all. A message is closed once its items reach
CHUNK_BYTES (serialized), far below gRPC's 4 MiB default that clients such as kubelet use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from cri_py.api import api_pb2
from cri_py.server.context import Context

if TYPE_CHECKING:
    from cri_py.services import Services

CHUNK_BYTES = 1024 * 1024
# a bound on items per message too, so tiny items do not make one huge message either
CHUNK_ITEMS = 5000

T = TypeVar("T")


def chunks(
    items: Iterable[T], limit_bytes: int = CHUNK_BYTES, limit_items: int = CHUNK_ITEMS
) -> Iterable[list[T]]:
    """Consecutive non-empty groups of `items` of at most `limit_bytes` serialized (a single
    larger item goes alone) and at most `limit_items` items."""
    batch: list[T] = []
    size = 0
    for item in items:
        # the repeated field's tag and length prefix add a few bytes per item
        item_size = item.ByteSize() + 6  # type: ignore[attr-defined]
        if batch and (size + item_size > limit_bytes or len(batch) >= limit_items):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        yield batch


async def _send(items: Iterable[T], wrap: Callable[[list[T]], Any]) -> AsyncIterator[Any]:
    for batch in chunks(items):
        yield wrap(batch)


class ListStreamHandlers:
    services: Services

    def StreamPodSandboxes(
        self, request: api_pb2.StreamPodSandboxesRequest, context: Context
    ) -> AsyncIterator[api_pb2.StreamPodSandboxesResponse]:
        flt = request.filter if request.HasField("filter") else None
        items = self.services.pod_queries.list(flt)
        return _send(items, lambda b: api_pb2.StreamPodSandboxesResponse(pod_sandboxes=b))

    def StreamContainers(
        self, request: api_pb2.StreamContainersRequest, context: Context
    ) -> AsyncIterator[api_pb2.StreamContainersResponse]:
        flt = request.filter if request.HasField("filter") else None
        items = self.services.container_queries.list(flt)
        return _send(items, lambda b: api_pb2.StreamContainersResponse(containers=b))

    async def StreamContainerStats(
        self, request: api_pb2.StreamContainerStatsRequest, context: Context
    ) -> AsyncIterator[api_pb2.StreamContainerStatsResponse]:
        items = await self.services.stats.list_container_stats(request.filter)
        async for msg in _send(items, lambda b: api_pb2.StreamContainerStatsResponse(container_stats=b)):
            yield msg

    async def StreamPodSandboxStats(
        self, request: api_pb2.StreamPodSandboxStatsRequest, context: Context
    ) -> AsyncIterator[api_pb2.StreamPodSandboxStatsResponse]:
        items = await self.services.stats.list_pod_stats(request.filter)
        async for msg in _send(items, lambda b: api_pb2.StreamPodSandboxStatsResponse(pod_sandbox_stats=b)):
            yield msg
