"""RuntimeService container handlers: validate, call `daemon.containers`, build the reply."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from cri_py.api import api_pb2
from cri_py.errors import InvalidArgument, Unavailable
from cri_py.server.context import Context

if TYPE_CHECKING:
    from cri_py.container.service import ContainerService
    from cri_py.daemon import Daemon


class ContainerHandlers:
    daemon: Daemon

    def _containers(self) -> ContainerService:
        containers = self.daemon.containers
        if containers is None:
            raise Unavailable("the container service is not running")
        return containers  # type: ignore[no-any-return]

    async def CreateContainer(
        self, request: api_pb2.CreateContainerRequest, context: Context
    ) -> api_pb2.CreateContainerResponse:
        if not request.HasField("config"):
            raise InvalidArgument("CreateContainer: config is required")
        sandbox_config = request.sandbox_config if request.HasField("sandbox_config") else None
        cid = await self._containers().create(request.pod_sandbox_id, request.config, sandbox_config)
        return api_pb2.CreateContainerResponse(container_id=cid)

    async def StartContainer(
        self, request: api_pb2.StartContainerRequest, context: Context
    ) -> api_pb2.StartContainerResponse:
        await self._containers().start(request.container_id)
        return api_pb2.StartContainerResponse()

    async def StopContainer(
        self, request: api_pb2.StopContainerRequest, context: Context
    ) -> api_pb2.StopContainerResponse:
        await self._containers().stop(request.container_id, request.timeout)
        return api_pb2.StopContainerResponse()

    async def RemoveContainer(
        self, request: api_pb2.RemoveContainerRequest, context: Context
    ) -> api_pb2.RemoveContainerResponse:
        await self._containers().remove(request.container_id)
        return api_pb2.RemoveContainerResponse()

    async def ListContainers(
        self, request: api_pb2.ListContainersRequest, context: Context
    ) -> bytes:  # a serialized ListContainersResponse, cached until a record changes
        flt = request.filter if request.HasField("filter") else None
        return self._containers().list_response(flt)

    async def ContainerStatus(
        self, request: api_pb2.ContainerStatusRequest, context: Context
    ) -> api_pb2.ContainerStatusResponse:
        return self._containers().status(request.container_id, request.verbose)

    async def UpdateContainerResources(
        self, request: api_pb2.UpdateContainerResourcesRequest, context: Context
    ) -> api_pb2.UpdateContainerResourcesResponse:
        await self._containers().update_resources(request.container_id, request.linux)
        return api_pb2.UpdateContainerResourcesResponse()

    async def ReopenContainerLog(
        self, request: api_pb2.ReopenContainerLogRequest, context: Context
    ) -> api_pb2.ReopenContainerLogResponse:
        await self._containers().reopen_log(request.container_id)
        return api_pb2.ReopenContainerLogResponse()

    async def ExecSync(self, request: api_pb2.ExecSyncRequest, context: Context) -> api_pb2.ExecSyncResponse:
        result = await self._containers().exec_sync(request.container_id, list(request.cmd), request.timeout)
        return api_pb2.ExecSyncResponse(
            stdout=result.stdout, stderr=result.stderr, exit_code=result.exit_code
        )

    async def ContainerStats(
        self, request: api_pb2.ContainerStatsRequest, context: Context
    ) -> api_pb2.ContainerStatsResponse:
        if not request.container_id:
            raise InvalidArgument("container id is required")
        return api_pb2.ContainerStatsResponse(stats=await self._containers().stats(request.container_id))

    async def ListContainerStats(
        self, request: api_pb2.ListContainerStatsRequest, context: Context
    ) -> api_pb2.ListContainerStatsResponse:
        flt = request.filter
        containers = self._containers()
        ids = containers.stats_ids(flt.id, flt.pod_sandbox_id, dict(flt.label_selector))
        stats = await asyncio.gather(*(containers.stats(cid) for cid in ids))
        return api_pb2.ListContainerStatsResponse(stats=list(stats))
