"""RuntimeService pod sandbox handlers: validate, call `daemon.pods`, build the reply."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from cri_py.api import api_pb2
from cri_py.errors import InvalidArgument, Unavailable
from cri_py.server.context import Context

if TYPE_CHECKING:
    from cri_py.container.service import ContainerService
    from cri_py.daemon import Daemon
    from cri_py.pod.service import PodService


class SandboxHandlers:
    daemon: Daemon

    def _pods(self) -> PodService:
        pods = self.daemon.pods
        if pods is None:
            raise Unavailable("the pod service is not running")
        return pods  # type: ignore[no-any-return]

    def _ctrs(self) -> ContainerService:
        containers = self.daemon.containers
        if containers is None:
            raise Unavailable("the container service is not running")
        return containers  # type: ignore[no-any-return]

    async def RunPodSandbox(
        self, request: api_pb2.RunPodSandboxRequest, context: Context
    ) -> api_pb2.RunPodSandboxResponse:
        if not request.HasField("config"):
            raise InvalidArgument("RunPodSandbox: config is required")
        pod_id = await self._pods().run(request.config, request.runtime_handler)
        return api_pb2.RunPodSandboxResponse(pod_sandbox_id=pod_id)

    async def StopPodSandbox(
        self, request: api_pb2.StopPodSandboxRequest, context: Context
    ) -> api_pb2.StopPodSandboxResponse:
        await self._pods().stop(request.pod_sandbox_id)
        return api_pb2.StopPodSandboxResponse()

    async def RemovePodSandbox(
        self, request: api_pb2.RemovePodSandboxRequest, context: Context
    ) -> api_pb2.RemovePodSandboxResponse:
        await self._pods().remove(request.pod_sandbox_id)
        return api_pb2.RemovePodSandboxResponse()

    async def PodSandboxStatus(
        self, request: api_pb2.PodSandboxStatusRequest, context: Context
    ) -> api_pb2.PodSandboxStatusResponse:
        return await self._pods().checked_status(request.pod_sandbox_id, request.verbose)

    async def ListPodSandbox(
        self, request: api_pb2.ListPodSandboxRequest, context: Context
    ) -> bytes:  # a serialized ListPodSandboxResponse, cached until a record changes
        flt = request.filter if request.HasField("filter") else None
        return self._pods().list_response(flt)

    async def UpdatePodSandboxResources(
        self, request: api_pb2.UpdatePodSandboxResourcesRequest, context: Context
    ) -> api_pb2.UpdatePodSandboxResourcesResponse:
        self._pods().update_resources(
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
        pod = self._pods().get(request.pod_sandbox_id)
        stats = await self._ctrs().pod_stats(pod.id)
        return api_pb2.PodSandboxStatsResponse(stats=stats)

    async def ListPodSandboxStats(
        self, request: api_pb2.ListPodSandboxStatsRequest, context: Context
    ) -> api_pb2.ListPodSandboxStatsResponse:
        flt = request.filter
        pods = self._pods()
        selected = []
        for pod in pods.all():
            if flt.id and not pod.id.startswith(flt.id):
                continue
            if flt.label_selector:
                labels = pod.config().labels
                if any(labels.get(k) != v for k, v in flt.label_selector.items()):
                    continue
            if pods.is_ready(pod):
                selected.append(pod.id)
        stats = await asyncio.gather(*(self._ctrs().pod_stats(pid) for pid in selected))
        return api_pb2.ListPodSandboxStatsResponse(stats=list(stats))
