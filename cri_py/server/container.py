"""RuntimeService container handlers: validate, call the container services, build the reply."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cri_py.api import api_pb2
from cri_py.errors import InvalidArgument
from cri_py.server.context import Context
from cri_py.validate import requests as validate

if TYPE_CHECKING:
    from cri_py.services import Services


class ContainerHandlers:
    services: Services

    async def CreateContainer(
        self, request: api_pb2.CreateContainerRequest, context: Context
    ) -> api_pb2.CreateContainerResponse:
        validate.create_container(request)
        sandbox_config = request.sandbox_config if request.HasField("sandbox_config") else None
        cid = await self.services.containers.create(request.pod_sandbox_id, request.config, sandbox_config)
        return api_pb2.CreateContainerResponse(container_id=cid)

    async def StartContainer(
        self, request: api_pb2.StartContainerRequest, context: Context
    ) -> api_pb2.StartContainerResponse:
        await self.services.containers.start(request.container_id)
        return api_pb2.StartContainerResponse()

    async def StopContainer(
        self, request: api_pb2.StopContainerRequest, context: Context
    ) -> api_pb2.StopContainerResponse:
        await self.services.containers.stop(request.container_id, request.timeout)
        return api_pb2.StopContainerResponse()

    async def RemoveContainer(
        self, request: api_pb2.RemoveContainerRequest, context: Context
    ) -> api_pb2.RemoveContainerResponse:
        await self.services.containers.remove(request.container_id)
        return api_pb2.RemoveContainerResponse()

    async def ListContainers(
        self, request: api_pb2.ListContainersRequest, context: Context
    ) -> bytes:  # a serialized ListContainersResponse, cached until a record changes
        flt = request.filter if request.HasField("filter") else None
        return self.services.container_queries.list_response(flt)

    async def ContainerStatus(
        self, request: api_pb2.ContainerStatusRequest, context: Context
    ) -> bytes:  # a serialized ContainerStatusResponse, kept with the record
        return self.services.container_queries.status_response(request.container_id, request.verbose)

    async def UpdateContainerResources(
        self, request: api_pb2.UpdateContainerResourcesRequest, context: Context
    ) -> api_pb2.UpdateContainerResourcesResponse:
        await self.services.containers.update_resources(request.container_id, request.linux)
        return api_pb2.UpdateContainerResourcesResponse()

    async def ReopenContainerLog(
        self, request: api_pb2.ReopenContainerLogRequest, context: Context
    ) -> api_pb2.ReopenContainerLogResponse:
        await self.services.containers.reopen_log(request.container_id)
        return api_pb2.ReopenContainerLogResponse()

    async def ExecSync(self, request: api_pb2.ExecSyncRequest, context: Context) -> api_pb2.ExecSyncResponse:
        result = await self.services.containers.exec_sync(
            request.container_id, list(request.cmd), request.timeout
        )
        return api_pb2.ExecSyncResponse(
            stdout=result.stdout, stderr=result.stderr, exit_code=result.exit_code
        )

    async def ContainerStats(
        self, request: api_pb2.ContainerStatsRequest, context: Context
    ) -> api_pb2.ContainerStatsResponse:
        if not request.container_id:
            raise InvalidArgument("container id is required")
        return api_pb2.ContainerStatsResponse(
            stats=await self.services.stats.container_stats(request.container_id)
        )

    async def ListContainerStats(
        self, request: api_pb2.ListContainerStatsRequest, context: Context
    ) -> api_pb2.ListContainerStatsResponse:
        return api_pb2.ListContainerStatsResponse(
            stats=await self.services.stats.list_container_stats(request.filter)
        )
