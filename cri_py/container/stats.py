"""Container and pod stats from cgroups, as CRI messages."""

from __future__ import annotations

from dataclasses import dataclass

from cri_py.api import api_pb2
from cri_py.oci.cgroups import CgroupUsage


@dataclass
class CpuSample:
    timestamp_ns: int
    usage_ns: int


def nano_cores(previous: CpuSample | None, usage: CgroupUsage) -> int:
    """CPU use since the previous sample, in billionths of a core."""
    if previous is None or usage.timestamp_ns <= previous.timestamp_ns:
        return 0
    delta = max(0, usage.cpu_usage_ns - previous.usage_ns)
    return delta * 1_000_000_000 // (usage.timestamp_ns - previous.timestamp_ns)


def u64(value: int) -> api_pb2.UInt64Value:
    return api_pb2.UInt64Value(value=max(0, value))


def cpu_message(usage: CgroupUsage, cores: int) -> api_pb2.CpuUsage:
    return api_pb2.CpuUsage(
        timestamp=usage.timestamp_ns,
        usage_core_nano_seconds=u64(usage.cpu_usage_ns),
        usage_nano_cores=u64(cores),
    )


def memory_message(usage: CgroupUsage) -> api_pb2.MemoryUsage:
    msg = api_pb2.MemoryUsage(
        timestamp=usage.timestamp_ns,
        working_set_bytes=u64(usage.working_set),
        usage_bytes=u64(usage.memory_usage),
        rss_bytes=u64(usage.rss),
        page_faults=u64(usage.page_faults),
        major_page_faults=u64(usage.major_page_faults),
    )
    if usage.memory_limit:
        msg.available_bytes.value = max(0, usage.memory_limit - usage.working_set)
    return msg


def sum_usage(samples: list[CgroupUsage], timestamp_ns: int) -> CgroupUsage:
    return CgroupUsage(
        timestamp_ns,
        sum(s.cpu_usage_ns for s in samples),
        sum(s.memory_usage for s in samples),
        sum(s.working_set for s in samples),
        sum(s.rss for s in samples),
        sum(s.page_faults for s in samples),
        sum(s.major_page_faults for s in samples),
        0,
        sum(s.pids for s in samples),
    )
