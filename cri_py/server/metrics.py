"""ListMetricDescriptors, ListPodSandboxMetrics, StreamPodSandboxMetrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from cri_py.api import api_pb2
from cri_py.server.context import Context
from cri_py.server.list_streams import chunks

if TYPE_CHECKING:
    from cri_py.services import Services


class MetricsHandlers:
    services: Services

    async def ListMetricDescriptors(
        self, request: api_pb2.ListMetricDescriptorsRequest, context: Context
    ) -> api_pb2.ListMetricDescriptorsResponse:
        return api_pb2.ListMetricDescriptorsResponse(descriptors=self.services.pod_metrics.descriptors())

    async def ListPodSandboxMetrics(
        self, request: api_pb2.ListPodSandboxMetricsRequest, context: Context
    ) -> api_pb2.ListPodSandboxMetricsResponse:
        return api_pb2.ListPodSandboxMetricsResponse(pod_metrics=await self.services.pod_metrics.collect())

    async def StreamPodSandboxMetrics(
        self, request: api_pb2.StreamPodSandboxMetricsRequest, context: Context
    ) -> AsyncIterator[api_pb2.StreamPodSandboxMetricsResponse]:
        for batch in chunks(await self.services.pod_metrics.collect()):
            yield api_pb2.StreamPodSandboxMetricsResponse(pod_sandbox_metrics=batch)
