"""ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats.

Every answer is built from record snapshots taken when the request starts: a container
removed meanwhile is left out, not an error for the whole list. Each container's cgroup is
read once per request, for its own stats and its pod's sum. CPU rates need the previous
sample; samples of removed containers and pods are dropped when their DELETED event comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from cri_py.api import api_pb2
from cri_py.config.model import Config
from cri_py.container.model import ContainerRecord
from cri_py.container.query import ContainerQueries
from cri_py.container.state import ContainerState
from cri_py.container.stats import CpuSample, cpu_message, memory_message, nano_cores, sum_usage
from cri_py.events import EventBus, EventKind, LifecycleEvent
from cri_py.network.manager import NetworkManager
from cri_py.oci.cgroups import CgroupUsage
from cri_py.oci.registry import RuntimeSet
from cri_py.pod.model import SandboxRecord
from cri_py.pod.query import PodQueries
from cri_py.pod.store import SandboxStore
from cri_py.storage.rootfs import RootfsManager

_ACTIVE = (ContainerState.CREATED, ContainerState.RUNNING)


class StatsService:
    def __init__(
        self,
        config: Config,
        containers: ContainerQueries,
        pods: SandboxStore,
        pod_queries: PodQueries,
        rootfs: RootfsManager,
        network: NetworkManager,
        runtimes: RuntimeSet,
        events: EventBus,
    ) -> None:
        self.config = config
        self.runtimes = runtimes
        self.containers = containers
        self.pods = pods
        self.pod_queries = pod_queries
        self.rootfs = rootfs
        self.network = network
        self._cpu_samples: dict[str, CpuSample] = {}
        events.subscribe(self._forget_samples)

    def _forget_samples(self, event: LifecycleEvent) -> None:
        if event.kind is EventKind.DELETED:
            self._cpu_samples.pop(event.id, None)
            self._cpu_samples.pop(f"pod-{event.id}", None)

    @property
    def samples_kept(self) -> int:
        return len(self._cpu_samples)

    # ---- containers --------------------------------------------------------------------

    async def container_stats(self, cid: str) -> api_pb2.ContainerStats:
        rec = self.containers.store.get(cid)
        return await self._container(rec, await self._usage(rec))

    async def list_container_stats(self, flt: api_pb2.ContainerStatsFilter) -> list[api_pb2.ContainerStats]:
        records = self._active(flt.id, flt.pod_sandbox_id, dict(flt.label_selector))
        usages = await asyncio.gather(*(self._usage(r) for r in records))
        return list(
            await asyncio.gather(*(self._container(r, u) for r, u in zip(records, usages, strict=True)))
        )

    def _active(self, cid: str, pod_id: str, labels: dict[str, str]) -> list[ContainerRecord]:
        return [r for r in self.containers.select(cid, pod_id, labels) if r.state in _ACTIVE]

    async def _usage(self, rec: ContainerRecord) -> CgroupUsage | None:
        if rec.state != ContainerState.RUNNING or not rec.cgroups_path:
            return None
        return await self.runtimes.get(rec.runtime_handler).stats(rec.cgroups_path)

    async def _container(self, rec: ContainerRecord, usage: CgroupUsage | None) -> api_pb2.ContainerStats:
        cfg = rec.config()
        now = time.time_ns()
        msg = api_pb2.ContainerStats(
            attributes=api_pb2.ContainerAttributes(
                id=rec.id, metadata=cfg.metadata, labels=dict(cfg.labels), annotations=dict(cfg.annotations)
            )
        )
        if usage is None:
            usage = CgroupUsage(now, 0, 0, 0, 0, 0, 0, 0, 0)
        cores = nano_cores(self._cpu_samples.get(rec.id), usage)
        if self.containers.store.current(rec.id) is not None:  # a removed one's would stay forever
            self._cpu_samples[rec.id] = CpuSample(usage.timestamp_ns, usage.cpu_usage_ns)
        msg.cpu.CopyFrom(cpu_message(usage, cores))
        msg.memory.CopyFrom(memory_message(usage))
        used, inodes = (0, 0)
        with contextlib.suppress(Exception):  # removed meanwhile: nothing written
            used, inodes = await asyncio.to_thread(self.rootfs.usage, rec.id)
        msg.writable_layer.CopyFrom(
            api_pb2.FilesystemUsage(
                timestamp=now,
                fs_id=api_pb2.FilesystemIdentifier(mountpoint=str(self.rootfs.mountpoint())),
                used_bytes=api_pb2.UInt64Value(value=used),
                inodes_used=api_pb2.UInt64Value(value=inodes),
            )
        )
        return msg

    # ---- pods --------------------------------------------------------------------------

    async def pod_stats(self, pod_id: str) -> api_pb2.PodSandboxStats:
        return await self._pod(self.pods.get(pod_id))

    async def list_pod_stats(self, flt: api_pb2.PodSandboxStatsFilter) -> list[api_pb2.PodSandboxStats]:
        pods = self.pod_queries.stats_candidates(flt)
        return list(await asyncio.gather(*(self._pod(p) for p in pods)))

    async def _pod(self, pod: SandboxRecord) -> api_pb2.PodSandboxStats:
        cfg = pod.config()
        now = time.time_ns()
        records = self._active("", pod.id, {})
        usages = await asyncio.gather(*(self._usage(r) for r in records))
        containers = await asyncio.gather(
            *(self._container(r, u) for r, u in zip(records, usages, strict=True))
        )
        total = sum_usage([u for u in usages if u is not None], now)
        key = f"pod-{pod.id}"
        cores = nano_cores(self._cpu_samples.get(key), total)
        if self.pods.current(pod.id) is not None:
            self._cpu_samples[key] = CpuSample(now, total.cpu_usage_ns)
        linux = api_pb2.LinuxPodSandboxStats(
            cpu=cpu_message(total, cores),
            memory=memory_message(total),
            process=api_pb2.ProcessUsage(timestamp=now, process_count=api_pb2.UInt64Value(value=total.pids)),
            containers=list(containers),
        )
        if pod.netns_path:
            with contextlib.suppress(Exception):
                counters = await self.network.pod_interface_stats(pod.id, Path(pod.netns_path))
                ifaces = [
                    api_pb2.NetworkInterfaceUsage(
                        name=name,
                        rx_bytes=api_pb2.UInt64Value(value=rx),
                        tx_bytes=api_pb2.UInt64Value(value=tx),
                    )
                    for name, (rx, tx) in sorted(counters.items())
                ]
                default = next((i for i in ifaces if i.name == "eth0"), ifaces[0] if ifaces else None)
                linux.network.CopyFrom(api_pb2.NetworkUsage(timestamp=now, interfaces=ifaces))
                if default is not None:
                    linux.network.default_interface.CopyFrom(default)
        return api_pb2.PodSandboxStats(
            attributes=api_pb2.PodSandboxAttributes(
                id=pod.id, metadata=cfg.metadata, labels=dict(cfg.labels), annotations=dict(cfg.annotations)
            ),
            linux=linux,
        )
