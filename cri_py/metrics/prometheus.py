"""The daemon's Prometheus metrics: one registry of the daemon's own, fed from the event bus.

Subscribers only: lifecycle events give exits (by reason) and OOM kills; the bus's timings give
every RPC (count and latency by code), image pulls (count, bytes, seconds, failures by reason)
and the runtime's and CNI plugins' call latencies. Containers and pods by state are counted from
the stores when scraped. Loaded only when `metrics.enabled` (prometheus_client costs memory).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cri_py.api import api_pb2
from cri_py.container.state import CRI_STATE
from cri_py.container.store import ContainerStore
from cri_py.event_feed import ContainerEventFeed
from cri_py.events import EventBus, EventKind, LifecycleEvent, Subject, Timing
from cri_py.pod.store import SandboxStore

_RPC_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
_CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_PULL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class _StateCollector(Collector):
    """Containers and pod sandboxes by CRI state, counted at scrape time (loop thread)."""

    def __init__(self, sandboxes: SandboxStore, containers: ContainerStore, feed: ContainerEventFeed) -> None:
        self._sandboxes = sandboxes
        self._containers = containers
        self._feed = feed

    def collect(self) -> Iterable[Any]:
        ctr = GaugeMetricFamily("cri_py_containers", "Containers by CRI state.", labels=["state"])
        tally = Tally(api_pb2.ContainerState.Name(CRI_STATE[r.state]) for r in self._containers.values())
        for state in ("CONTAINER_CREATED", "CONTAINER_RUNNING", "CONTAINER_EXITED", "CONTAINER_UNKNOWN"):
            ctr.add_metric([state.removeprefix("CONTAINER_").lower()], tally.get(state, 0))
        yield ctr
        pods = GaugeMetricFamily("cri_py_pod_sandboxes", "Pod sandboxes by CRI state.", labels=["state"])
        ready = sum(1 for p in self._sandboxes.values() if self._sandboxes.is_ready(p))
        total = sum(1 for _ in self._sandboxes.values())
        pods.add_metric(["ready"], ready)
        pods.add_metric(["notready"], total - ready)
        yield pods
        yield GaugeMetricFamily(
            "cri_py_container_event_streams", "Open GetContainerEvents streams.", value=self._feed.streams
        )


class DaemonMetrics:
    """Owns the registry; subscribed to the bus until `close`."""

    def __init__(
        self, bus: EventBus, sandboxes: SandboxStore, containers: ContainerStore, feed: ContainerEventFeed
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        rpc = ["grpc_type", "grpc_service", "grpc_method", "grpc_code"]
        self.rpc_handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the CRI socket, by method and status code.",
            rpc,
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time to answer a CRI RPC (a stream: until it ended), by method and status code.",
            rpc,
            buckets=_RPC_BUCKETS,
            registry=r,
        )
        self.pulls = Counter("cri_py_image_pulls", "Images pulled.", registry=r)
        self.pull_bytes = Counter(
            "cri_py_image_pull_bytes", "Bytes of the images pulled (their compressed size).", registry=r
        )
        self.pull_seconds = Histogram(
            "cri_py_image_pull_duration_seconds", "Time to pull an image.", buckets=_PULL_BUCKETS, registry=r
        )
        self.pull_failures = Counter(
            "cri_py_image_pull_failures", "Image pulls that failed, by reason.", ["reason"], registry=r
        )
        self.oom_kills = Counter(
            "cri_py_container_oom_kills", "Containers the kernel's OOM killer ended.", registry=r
        )
        self.exits = Counter(
            "cri_py_container_exits",
            "Containers that stopped, by reason (Completed, Error, OOMKilled).",
            ["reason"],
            registry=r,
        )
        self.runtime_seconds = Histogram(
            "cri_py_runtime_operation_duration_seconds",
            "Time of an OCI runtime call (create under conmon, start, kill, delete, exec, ...).",
            ["runtime", "operation", "result"],
            buckets=_CALL_BUCKETS,
            registry=r,
        )
        self.cni_seconds = Histogram(
            "cri_py_cni_operation_duration_seconds",
            "Time of a CNI plugin call (ADD, DEL, CHECK, STATUS, GC).",
            ["plugin", "operation", "result"],
            buckets=_CALL_BUCKETS,
            registry=r,
        )
        r.register(_StateCollector(sandboxes, containers, feed))
        ProcessCollector(registry=r)
        self._unsubscribe: list[Callable[[], None]] = [
            bus.subscribe(self._on_event),
            bus.timings.subscribe(self._on_timing),
        ]

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []

    def _on_event(self, event: LifecycleEvent) -> None:
        if event.subject is Subject.CONTAINER and event.kind is EventKind.STOPPED:
            reason = getattr(event.record, "reason", "") or "Unknown"
            self.exits.labels(reason).inc()
            if reason == "OOMKilled":
                self.oom_kills.inc()

    def _on_timing(self, t: Timing) -> None:
        if t.component == "grpc":
            service, _, kind = t.target.partition(" ")
            labels = (kind or "unary", service, t.operation, t.error or "OK")
            self.rpc_handled.labels(*labels).inc()
            self.rpc_seconds.labels(*labels).observe(t.seconds)
        elif t.component == "image_pull":
            if t.error:
                self.pull_failures.labels(t.error).inc()
            else:
                self.pulls.inc()
                self.pull_bytes.inc(t.size)
                self.pull_seconds.observe(t.seconds)
        elif t.component == "runtime":
            self.runtime_seconds.labels(t.target, t.operation, "error" if t.error else "ok").observe(
                t.seconds
            )
        elif t.component == "cni":
            self.cni_seconds.labels(t.target, t.operation, "error" if t.error else "ok").observe(t.seconds)

    def families(self) -> Iterator[Any]:
        return iter(self.registry.collect())
