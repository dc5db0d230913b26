"""Version, Status, RuntimeConfig, UpdateRuntimeConfig and the day-one ImageFsInfo."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import cri_py
from cri_py.api import api_pb2
from cri_py.server.context import Context

if TYPE_CHECKING:
    from cri_py.daemon import Daemon

log = logging.getLogger("cri_py.server")


class StatusHandlers:
    daemon: Daemon

    async def Version(self, request: api_pb2.VersionRequest, context: Context) -> api_pb2.VersionResponse:
        return api_pb2.VersionResponse(
            version="0.1.0",  # the kubelet runtime API version string, fixed by the CRI
            runtime_name="cri-py",
            runtime_version=cri_py.__version__,
            runtime_api_version="v1",
        )

    async def Status(self, request: api_pb2.StatusRequest, context: Context) -> api_pb2.StatusResponse:
        net_ready, net_reason, net_message = self.daemon.network_status()
        conditions = [
            api_pb2.RuntimeCondition(type="RuntimeReady", status=True),
            api_pb2.RuntimeCondition(
                type="NetworkReady", status=net_ready, reason=net_reason, message=net_message
            ),
        ]
        config = self.daemon.config
        runtimes = self.daemon.services.runtimes
        userns = await self.daemon.services.pods.user_namespaces_supported()
        handlers = []
        for name in sorted(runtimes.names()):
            runtime = runtimes.find(name)
            if runtime is None:
                continue  # not installed (an optional handler)
            features = api_pb2.RuntimeHandlerFeatures(
                recursive_read_only_mounts=await runtime.recursive_read_only_mounts(),
                # a sandboxed runtime (gVisor, Kata) keeps its own users
                user_namespaces=userns and not runtime.is_sandboxed,
            )
            handlers.append(api_pb2.RuntimeHandler(name=name, features=features))
            if name == config.default_runtime:
                # the default handler answers to "" too, which is what kubelet asks for
                handlers.append(api_pb2.RuntimeHandler(name="", features=features))
        info: dict[str, str] = {}
        if request.verbose:
            info["config"] = json.dumps(config.to_json())
        return api_pb2.StatusResponse(
            status=api_pb2.RuntimeStatus(conditions=conditions),
            info=info,
            runtime_handlers=handlers,
            features=api_pb2.RuntimeFeatures(supplemental_groups_policy=True),
        )

    async def RuntimeConfig(
        self, request: api_pb2.RuntimeConfigRequest, context: Context
    ) -> api_pb2.RuntimeConfigResponse:
        driver = (
            api_pb2.CgroupDriver.SYSTEMD
            if self.daemon.config.cgroup_driver == "systemd"
            else api_pb2.CgroupDriver.CGROUPFS
        )
        return api_pb2.RuntimeConfigResponse(linux=api_pb2.LinuxRuntimeConfiguration(cgroup_driver=driver))

    async def UpdateRuntimeConfig(
        self, request: api_pb2.UpdateRuntimeConfigRequest, context: Context
    ) -> api_pb2.UpdateRuntimeConfigResponse:
        # kubelet sends the node's pod CIDR; CNI confs carry their own ranges, so it is only recorded.
        cidr = request.runtime_config.network_config.pod_cidr
        if cidr != self.daemon.pod_cidr:
            log.info("pod CIDR updated", extra={"pod_cidr": cidr})
            self.daemon.pod_cidr = cidr
        return api_pb2.UpdateRuntimeConfigResponse()
