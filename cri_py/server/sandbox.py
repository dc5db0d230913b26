"""RuntimeService pod sandbox handlers: validate, call the pod services, build the reply."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from cri_py.api import api_pb2
from cri_py.errors import InvalidArgument
from cri_py.server.context import Context
from cri_py.validate import requests as validate

if TYPE_CHECKING:
    from cri_py.services import Services


class SandboxHandlers:
    services: Services

    async def RunPodSandbox(
        self, request: api_pb2.RunPodSandboxRequest, context: Context
    ) -> api_pb2.RunPodSandboxResponse:
        validate.run_pod_sandbox(request)
        pod_id = await self.services.pods.run(request.config, request.runtime_handler)
        return api_pb2.RunPodSandboxResponse(pod_sandbox_id=pod_id)

    async def StopPodSandbox(
        self, request: api_pb2.StopPodSandboxRequest, context: Context
    ) -> api_pb2.StopPodSandboxResponse:
        await self.services.pods.stop(request.pod_sandbox_id)
        return api_pb2.StopPodSandboxResponse()

    async def RemovePodSandbox(
        self, request: api_pb2.RemovePodSandboxRequest, context: Context
    ) -> api_pb2.RemovePodSandboxResponse:
        await self.services.pods.remove(request.pod_sandbox_id)
        return api_pb2.RemovePodSandboxResponse()

    async def PodSandboxStatus(
        self, request: api_pb2.PodSandboxStatusRequest, context: Context
    ) -> bytes:  # a serialized PodSandboxStatusResponse, pieced from parts kept with the records
        pod_part = await self.services.pod_queries.status_response(request.pod_sandbox_id, request.verbose)
        # the answer has a timestamp (when the sandbox was read), so kubelet's evented PLEG takes
        # the pod's containers from it alone, as CRI-O with pod events does; read after that
        # moment, they are never older than it says (the parts are serialized fields of the
        # same message: concatenated, they are one answer)
        stamp = api_pb2.PodSandboxStatusResponse(timestamp=time.time_ns()).SerializeToString()
        containers = self.services.container_queries.status_fields_in_pod(request.pod_sandbox_id)
        return pod_part + stamp + containers

    async def ListPodSandbox(
        self, request: api_pb2.ListPodSandboxRequest, context: Context
    ) -> bytes:  # a serialized ListPodSandboxResponse, cached until a record changes
        flt = request.filter if request.HasField("filter") else None
        return self.services.pod_queries.list_response(flt)

    async def UpdatePodSandboxResources(
        self, request: api_pb2.UpdatePodSandboxResourcesRequest, context: Context
    ) -> api_pb2.UpdatePodSandboxResourcesResponse:
        self.services.pods.update_resources(
            request.pod_sandbox_id,
            request.overhead if request.HasField("overhead") else None,
            request.resources if request.HasField("resources") else None,
        )
        return api_pb2.UpdatePodSandboxResourcesResponse()

    async def PodSandboxStats(
        self, request: api_pb2.PodSandboxStatsRequest, context: Context
    ) -> api_pb2.PodSandboxStatsResponse:
        if not request.pod_sandbox_id:
            raise InvalidArgument("pod sandbox id is required")
        return api_pb2.PodSandboxStatsResponse(
            stats=await self.services.stats.pod_stats(request.pod_sandbox_id)
        )

    async def ListPodSandboxStats(
        self, request: api_pb2.ListPodSandboxStatsRequest, context: Context
    ) -> api_pb2.ListPodSandboxStatsResponse:
        return api_pb2.ListPodSandboxStatsResponse(
            stats=await self.services.stats.list_pod_stats(request.filter)
        )
