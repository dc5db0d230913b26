"""ListPodSandboxMetrics: cAdvisor's container_* series for every ready pod, read live.

Per running container: its cgroup (CPU, memory, OOM kills, processes), its writable layer
(filesystem usage) and its spec (limits). Per pod: the interfaces of its network namespace,
under the pod's own labels (container "POD", as cAdvisor reports the network of the pause
container). Values are read when asked (Metric.timestamp 0, as the CRI says for live values).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cri_py.api import api_pb2
from cri_py.container.model import ContainerRecord
from cri_py.container.state import ContainerState
from cri_py.container.store import ContainerStore
from cri_py.metrics import descriptors as d
from cri_py.metrics.cgroup_sample import CgroupSample, read_sample
from cri_py.metrics.netstat import LinkCounters, link_counters
from cri_py.oci.cgroups import cgroup_relpath
from cri_py.pod.model import SandboxRecord
from cri_py.pod.store import SandboxStore
from cri_py.storage.rootfs import RootfsManager

_NS = 1_000_000_000


@dataclass(frozen=True)
class FsInfo:
    device: str
    capacity: int
    inodes: int
    inodes_free: int


@dataclass(frozen=True)
class ContainerReading:
    rec: ContainerRecord
    sample: CgroupSample
    used_bytes: int


def filesystem_info(path: Path) -> FsInfo:
    """The device (as mountinfo names it) and size of the filesystem holding `path`."""
    st = os.statvfs(path)
    dev = os.stat(path).st_dev
    wanted = f"{os.major(dev)}:{os.minor(dev)}"
    device = str(path)
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            if len(fields) > 4 and fields[2] == wanted and "-" in fields:
                device = fields[fields.index("-") + 2]
                break
    return FsInfo(device, st.f_blocks * st.f_frsize, st.f_files, st.f_ffree)


class PodMetrics:
    def __init__(
        self, sandboxes: SandboxStore, containers: ContainerStore, rootfs: RootfsManager, cgroup_driver: str
    ) -> None:
        self.sandboxes = sandboxes
        self.containers = containers
        self.rootfs = rootfs
        self.cgroup_driver = cgroup_driver

    @staticmethod
    def descriptors() -> list[api_pb2.MetricDescriptor]:
        return [desc.message() for desc in d.ALL]

    async def collect(self) -> list[api_pb2.PodSandboxMetrics]:
        pods = [p for p in self.sandboxes.values() if self.sandboxes.is_ready(p)]
        running = {
            p.id: [
                r
                for r in self.containers.in_pod(p.id)
                if r.state == ContainerState.RUNNING and r.cgroups_path
            ]
            for p in pods
        }
        fs = await asyncio.to_thread(filesystem_info, self.rootfs.mountpoint())
        return list(await asyncio.gather(*(self._pod(p, running[p.id], fs) for p in pods)))

    async def _pod(
        self, pod: SandboxRecord, records: list[ContainerRecord], fs: FsInfo
    ) -> api_pb2.PodSandboxMetrics:
        readings, links = await asyncio.to_thread(self._read_pod, pod, records)
        md = pod.config().metadata
        now_s = time.time_ns() // _NS
        msg = api_pb2.PodSandboxMetrics(pod_sandbox_id=pod.id)
        pod_labels = (pod.id, "POD", "", md.namespace, md.name, "POD")
        msg.metrics.extend(network_metrics(pod_labels, links))
        for reading in readings:
            cfg = reading.rec.config()
            labels = (
                reading.rec.id,
                cfg.metadata.name,
                reading.rec.image_name,
                md.namespace,
                md.name,
                cfg.metadata.name,
            )
            msg.container_metrics.append(
                api_pb2.ContainerMetrics(
                    container_id=reading.rec.id, metrics=container_metrics(labels, reading, fs, now_s)
                )
            )
        return msg

    def _read_pod(
        self, pod: SandboxRecord, records: list[ContainerRecord]
    ) -> tuple[list[ContainerReading], dict[str, LinkCounters]]:
        """Blocking reads of one pod (a worker thread): cgroups, writable layers, the netns."""
        readings = []
        for rec in records:
            sample = read_sample(cgroup_relpath(rec.cgroups_path, self.cgroup_driver))
            if sample is None:
                continue  # exited meanwhile
            used = 0
            with contextlib.suppress(Exception):
                used = self.rootfs.usage(rec.id)[0]
            readings.append(ContainerReading(rec, sample, used))
        links: dict[str, LinkCounters] = {}
        if pod.netns_path:
            with contextlib.suppress(Exception):  # the namespace went away with the pod
                links = link_counters(Path(pod.netns_path))
        return readings, links


def _metric(desc: d.Descriptor, labels: Iterable[str], value: int) -> api_pb2.Metric:
    return api_pb2.Metric(
        name=desc.name,
        timestamp=0,
        metric_type=desc.type,
        label_values=list(labels),
        value=api_pb2.UInt64Value(value=max(0, int(value))),
    )


def container_metrics(
    labels: tuple[str, ...], reading: ContainerReading, fs: FsInfo, now_s: int
) -> list[api_pb2.Metric]:
    s = reading.sample
    rec = reading.rec
    res = rec.resources()
    plain: list[tuple[d.Descriptor, int]] = [
        (d.CPU_USER, s.cpu_user_ns // _NS),
        (d.CPU_SYSTEM, s.cpu_system_ns // _NS),
        (d.CFS_PERIODS, s.cfs_periods),
        (d.CFS_THROTTLED_PERIODS, s.cfs_throttled_periods),
        (d.CFS_THROTTLED_SECONDS, s.cfs_throttled_ns // _NS),
        (d.MEMORY_USAGE, s.memory_usage),
        (d.MEMORY_MAX_USAGE, s.memory_max_usage),
        (d.MEMORY_WORKING_SET, s.working_set),
        (d.MEMORY_RSS, s.rss),
        (d.MEMORY_CACHE, s.cache),
        (d.MEMORY_SWAP, s.swap),
        (d.MEMORY_MAPPED_FILE, s.mapped_file),
        (d.MEMORY_FAILCNT, s.failcnt),
        (d.OOM_EVENTS, s.oom_kills),
        (d.PROCESSES, s.processes),
        (d.THREADS, s.threads),
        (d.THREADS_MAX, s.threads_max),
        (d.SPEC_MEMORY_LIMIT, res.memory_limit_in_bytes),
        (d.SPEC_CPU_SHARES, res.cpu_shares),
        (d.SPEC_CPU_QUOTA, res.cpu_quota),
        (d.SPEC_CPU_PERIOD, res.cpu_period),
        (d.START_TIME, rec.started_at // _NS),
        (d.LAST_SEEN, now_s),
    ]
    out = [_metric(d.CPU_USAGE, (*labels, "total"), s.cpu_total_ns // _NS)]
    out += [_metric(desc, labels, value) for desc, value in plain]
    for failure, value in (("pgfault", s.pgfault), ("pgmajfault", s.pgmajfault)):
        out.append(_metric(d.MEMORY_FAILURES, (*labels, failure, "container"), value))
    device = (*labels, fs.device)
    out += [
        _metric(d.FS_USAGE, device, reading.used_bytes),
        _metric(d.FS_LIMIT, device, fs.capacity),
        _metric(d.FS_INODES_TOTAL, device, fs.inodes),
        _metric(d.FS_INODES_FREE, device, fs.inodes_free),
    ]
    return out


def network_metrics(labels: tuple[str, ...], links: dict[str, LinkCounters]) -> list[api_pb2.Metric]:
    out = []
    for name, c in sorted(links.items()):
        iface = (*labels, name)
        out += [
            _metric(d.NET_RX_BYTES, iface, c.rx_bytes),
            _metric(d.NET_RX_PACKETS, iface, c.rx_packets),
            _metric(d.NET_RX_DROPPED, iface, c.rx_dropped),
            _metric(d.NET_RX_ERRORS, iface, c.rx_errors),
            _metric(d.NET_TX_BYTES, iface, c.tx_bytes),
            _metric(d.NET_TX_PACKETS, iface, c.tx_packets),
            _metric(d.NET_TX_DROPPED, iface, c.tx_dropped),
            _metric(d.NET_TX_ERRORS, iface, c.tx_errors),
        ]
    return out
