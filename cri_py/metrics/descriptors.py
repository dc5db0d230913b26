"""The CRI metric descriptors: cAdvisor's container_* names, help texts and label keys.

kubelet (PodAndContainerStatsFromCRI) reads these once at start and then turns every metric of
ListPodSandboxMetrics into a Prometheus series with these label keys, so the values a metric
carries line up with `label_keys` one to one. The base labels are cAdvisor's own for a
container (what kubelet's /metrics/cadvisor shows): id, name, image, namespace, pod, container.
The CRI carries values as unsigned integers: seconds are whole seconds, as CRI-O and
containerd report them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cri_py.api import api_pb2

BASE_LABELS = ("id", "name", "image", "namespace", "pod", "container")

COUNTER = api_pb2.COUNTER
GAUGE = api_pb2.GAUGE


@dataclass(frozen=True)
class Descriptor:
    name: str
    help: str
    type: Any  # api_pb2.MetricType (COUNTER or GAUGE)
    extra_labels: tuple[str, ...] = ()

    @property
    def label_keys(self) -> tuple[str, ...]:
        return BASE_LABELS + self.extra_labels

    def message(self) -> api_pb2.MetricDescriptor:
        return api_pb2.MetricDescriptor(name=self.name, help=self.help, label_keys=list(self.label_keys))


def _d(name: str, help_text: str, kind: Any, *extra: str) -> Descriptor:
    return Descriptor(name, help_text, kind, tuple(extra))


CPU_USAGE = _d(
    "container_cpu_usage_seconds_total", "Cumulative CPU time consumed in seconds.", COUNTER, "cpu"
)
CPU_USER = _d("container_cpu_user_seconds_total", "Cumulative user CPU time consumed in seconds.", COUNTER)
CPU_SYSTEM = _d(
    "container_cpu_system_seconds_total", "Cumulative system CPU time consumed in seconds.", COUNTER
)
CFS_PERIODS = _d(
    "container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", COUNTER
)
CFS_THROTTLED_PERIODS = _d(
    "container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", COUNTER
)
CFS_THROTTLED_SECONDS = _d(
    "container_cpu_cfs_throttled_seconds_total",
    "Total time duration the container has been throttled.",
    COUNTER,
)
MEMORY_USAGE = _d(
    "container_memory_usage_bytes",
    "Current memory usage in bytes, including all memory regardless of when it was accessed",
    GAUGE,
)
MEMORY_MAX_USAGE = _d("container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes", GAUGE)
MEMORY_WORKING_SET = _d("container_memory_working_set_bytes", "Current working set in bytes.", GAUGE)
MEMORY_RSS = _d("container_memory_rss", "Size of RSS in bytes.", GAUGE)
MEMORY_CACHE = _d("container_memory_cache", "Number of bytes of page cache memory.", GAUGE)
MEMORY_SWAP = _d("container_memory_swap", "Container swap usage in bytes.", GAUGE)
MEMORY_MAPPED_FILE = _d("container_memory_mapped_file", "Size of memory mapped files in bytes.", GAUGE)
MEMORY_FAILCNT = _d("container_memory_failcnt", "Number of memory usage hits limits", COUNTER)
MEMORY_FAILURES = _d(
    "container_memory_failures_total",
    "Cumulative count of memory allocation failures.",
    COUNTER,
    "failure_type",
    "scope",
)
OOM_EVENTS = _d(
    "container_oom_events_total", "Count of out of memory events observed for the container", COUNTER
)
PROCESSES = _d("container_processes", "Number of processes running inside the container.", GAUGE)
THREADS = _d("container_threads", "Number of threads running inside the container", GAUGE)
THREADS_MAX = _d(
    "container_threads_max",
    "Maximum number of threads allowed inside the container, infinity if value is zero",
    GAUGE,
)
FS_USAGE = _d(
    "container_fs_usage_bytes",
    "Number of bytes that are consumed by the container on this filesystem.",
    GAUGE,
    "device",
)
FS_LIMIT = _d(
    "container_fs_limit_bytes",
    "Number of bytes that can be consumed by the container on this filesystem.",
    GAUGE,
    "device",
)
FS_INODES_TOTAL = _d("container_fs_inodes_total", "Number of Inodes", GAUGE, "device")
FS_INODES_FREE = _d("container_fs_inodes_free", "Number of available Inodes", GAUGE, "device")
SPEC_MEMORY_LIMIT = _d("container_spec_memory_limit_bytes", "Memory limit for the container.", GAUGE)
SPEC_CPU_SHARES = _d("container_spec_cpu_shares", "CPU share of the container.", GAUGE)
SPEC_CPU_QUOTA = _d("container_spec_cpu_quota", "CPU quota of the container.", GAUGE)
SPEC_CPU_PERIOD = _d("container_spec_cpu_period", "CPU period of the container.", GAUGE)
START_TIME = _d(
    "container_start_time_seconds", "Start time of the container since unix epoch in seconds.", GAUGE
)
LAST_SEEN = _d("container_last_seen", "Last time a container was seen by the exporter", GAUGE)

_NET = "interface"
NET_RX_BYTES = _d(
    "container_network_receive_bytes_total", "Cumulative count of bytes received", COUNTER, _NET
)
NET_RX_PACKETS = _d(
    "container_network_receive_packets_total", "Cumulative count of packets received", COUNTER, _NET
)
NET_RX_DROPPED = _d(
    "container_network_receive_packets_dropped_total",
    "Cumulative count of packets dropped while receiving",
    COUNTER,
    _NET,
)
NET_RX_ERRORS = _d(
    "container_network_receive_errors_total",
    "Cumulative count of errors encountered while receiving",
    COUNTER,
    _NET,
)
NET_TX_BYTES = _d(
    "container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", COUNTER, _NET
)
NET_TX_PACKETS = _d(
    "container_network_transmit_packets_total", "Cumulative count of packets transmitted", COUNTER, _NET
)
NET_TX_DROPPED = _d(
    "container_network_transmit_packets_dropped_total",
    "Cumulative count of packets dropped while transmitting",
    COUNTER,
    _NET,
)
NET_TX_ERRORS = _d(
    "container_network_transmit_errors_total",
    "Cumulative count of errors encountered while transmitting",
    COUNTER,
    _NET,
)

ALL: tuple[Descriptor, ...] = (
    CPU_USAGE, CPU_USER, CPU_SYSTEM, CFS_PERIODS, CFS_THROTTLED_PERIODS, CFS_THROTTLED_SECONDS,
    MEMORY_USAGE, MEMORY_MAX_USAGE, MEMORY_WORKING_SET, MEMORY_RSS, MEMORY_CACHE, MEMORY_SWAP,
    MEMORY_MAPPED_FILE, MEMORY_FAILCNT, MEMORY_FAILURES, OOM_EVENTS,
    PROCESSES, THREADS, THREADS_MAX,
    FS_USAGE, FS_LIMIT, FS_INODES_TOTAL, FS_INODES_FREE,
    SPEC_MEMORY_LIMIT, SPEC_CPU_SHARES, SPEC_CPU_QUOTA, SPEC_CPU_PERIOD, START_TIME, LAST_SEEN,
    NET_RX_BYTES, NET_RX_PACKETS, NET_RX_DROPPED, NET_RX_ERRORS,
    NET_TX_BYTES, NET_TX_PACKETS, NET_TX_DROPPED, NET_TX_ERRORS,
)  # fmt: skip
