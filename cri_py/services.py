"""The daemon's services, built once, whole and typed, each given what it depends on.

    stores (sandboxes, containers) ── images (asks the container store what is in use)
         │                        └── rootfs, network, runtimes, host facts
         ├── ContainerService (pod store, images, rootfs, runtimes)
         ├── PodService (pod store, the container service, network, runtimes)
         ├── queries, stats and CRI metrics (read the stores)
         └── the container event feed (the event bus + the stores, for GetContainerEvents)

No service is handed another after construction, and none is ever None: the gRPC server is
built from a finished `Services` (start-up recovery ran before it serves).
"""

from __future__ import annotations

from dataclasses import dataclass

from cri_py.config.model import Config
from cri_py.container.query import ContainerQueries
from cri_py.container.service import ContainerService
from cri_py.container.stats_service import StatsService
from cri_py.container.store import ContainerStore
from cri_py.event_feed import ContainerEventFeed
from cri_py.events import EventBus
from cri_py.image.service import ImageService
from cri_py.metrics.pod_metrics import PodMetrics
from cri_py.network.manager import NetworkManager
from cri_py.oci.cgroups import CADVISOR_PREFIX, CONTAINER_PREFIX, hugetlb_available, own_oom_score_adj
from cri_py.oci.registry import RuntimeSet
from cri_py.oci.security import host_capabilities
from cri_py.oci.spec import HostFacts
from cri_py.pod.pinner import ForkPinner, ThreadPinner
from cri_py.pod.query import PodQueries
from cri_py.pod.service import PodService
from cri_py.pod.store import SandboxStore
from cri_py.storage.rootfs import RootfsManager
from cri_py.store import Database
from cri_py.streaming.server import StreamingServer
from cri_py.tasks import TaskOwner


@dataclass(frozen=True)
class Services:
    runtimes: RuntimeSet
    images: ImageService
    rootfs: RootfsManager
    network: NetworkManager
    sandboxes: SandboxStore
    pods: PodService
    pod_queries: PodQueries
    containers: ContainerService
    container_queries: ContainerQueries
    stats: StatsService
    pod_metrics: PodMetrics
    events_feed: ContainerEventFeed
    streaming: StreamingServer

    @classmethod
    def build(cls, config: Config, db: Database, events: EventBus, tasks: TaskOwner) -> Services:
        host = HostFacts(
            config.cgroup_driver,
            own_oom_score_adj(),
            host_capabilities(),
            hugetlb=hugetlb_available(),
            # cAdvisor's CRI-O handler claims only crio-<id> cgroups (metrics/inspect_api.py)
            cgroup_prefix=CADVISOR_PREFIX if config.inspect_socket else CONTAINER_PREFIX,
        )
        runtimes = RuntimeSet(config, events)
        sandboxes = SandboxStore(db, events)
        container_store = ContainerStore(db, events)
        images = ImageService(config, db, tasks=tasks, in_use=container_store.image_in_use)
        rootfs = RootfsManager(config)
        network = NetworkManager(config.cni, config.run_dir, events=events)
        containers = ContainerService(
            config, container_store, sandboxes, images, rootfs, runtimes, host, tasks
        )
        pods = PodService(
            config, sandboxes, containers, network, runtimes, host, tasks, ThreadPinner(), ForkPinner()
        )
        pod_queries = PodQueries(config, sandboxes, network)
        container_queries = ContainerQueries(container_store)
        stats = StatsService(
            config, container_queries, sandboxes, pod_queries, rootfs, network, runtimes, events
        )
        # subscribed before recovery runs: exits found then reach GetContainerEvents streams too
        events_feed = ContainerEventFeed(events, sandboxes, container_store)
        return cls(
            runtimes=runtimes,
            images=images,
            rootfs=rootfs,
            network=network,
            sandboxes=sandboxes,
            pods=pods,
            pod_queries=pod_queries,
            containers=containers,
            container_queries=container_queries,
            stats=stats,
            pod_metrics=PodMetrics(sandboxes, container_store, rootfs, config.cgroup_driver),
            events_feed=events_feed,
            streaming=StreamingServer.from_config(config),
        )

    async def recover(self) -> None:
        """Start what runs in the background and reconcile with what a previous run left."""
        await self.images.start()
        # ImageFsInfo reports this directory from the first call on, before any container exists
        self.rootfs.mountpoint().mkdir(parents=True, exist_ok=True)
        await self.pods.recover()
        await self.containers.recover()
        await self.streaming.start()
        # after the pods are known: releases CNI attachments of pods that no longer exist
        await self.network.start(self.sandboxes.ids)

    async def close(self) -> None:
        """After the daemon's tasks have ended: what each service holds besides them."""
        await self.network.stop()
        await self.images.close()
