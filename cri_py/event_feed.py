"""GetContainerEvents' feed: every lifecycle event with its pod's statuses at that moment.

kubelet's evented PLEG builds a pod's whole status from one event (the sandbox status and the
container statuses it carries) and keeps it if the event's timestamp is not older than what it
has. So the statuses are captured when the event is published, not when a slow stream gets to
it. Capturing is cheap: records are immutable values, so a snapshot is a few references; the
CRI message is built once, by the first stream that sends it.

Each stream reads through its own bounded `Subscription` (`EVENT_BUFFER` events, the size of
kubelet's own event channel). A stream that falls that far behind is ended with
RESOURCE_EXHAUSTED (`Overflow.CLOSE`) instead of silently losing events: kubelet answers a
broken stream by relisting at once, which repairs its cache, then subscribes again; a dropped
event would leave its cache stale until the next periodic relist. Producers never wait.

Events published during start-up recovery (exits that happened while the daemon was down) are
kept and handed first to every stream opened within `RECOVERY_REPLAY_S` of serving: kubelet
reconnects after a daemon restart and learns of those exits from events, not only a relist.
"""

from __future__ import annotations

import collections
import functools
import time
from dataclasses import dataclass

from cri_py.api import api_pb2
from cri_py.container.model import ContainerRecord
from cri_py.container.query import container_status
from cri_py.container.state import ContainerState
from cri_py.container.store import ContainerStore
from cri_py.events import EventBus, EventKind, Hub, LifecycleEvent, Overflow, Subject, Subscription
from cri_py.pod.model import SandboxRecord
from cri_py.pod.query import sandbox_status
from cri_py.pod.store import SandboxStore

# kubelet's evented PLEG reads into a channel of 1000 (plegChannelCapacity)
EVENT_BUFFER = 1000
# how long after start-up a new stream still gets the events recovery produced
RECOVERY_REPLAY_S = 60.0

EVENT_TYPE = {
    EventKind.CREATED: api_pb2.CONTAINER_CREATED_EVENT,
    EventKind.STARTED: api_pb2.CONTAINER_STARTED_EVENT,
    EventKind.STOPPED: api_pb2.CONTAINER_STOPPED_EVENT,
    EventKind.DELETED: api_pb2.CONTAINER_DELETED_EVENT,
}


@dataclass(frozen=True)
class PodEvent:
    """One lifecycle event and the pod as it was when the event was published."""

    event: LifecycleEvent
    sandbox: SandboxRecord | None  # None only if a container outlived its sandbox record
    sandbox_ready: bool
    containers: tuple[ContainerRecord, ...]

    @functools.cached_property
    def response(self) -> api_pb2.ContainerEventResponse:
        msg = api_pb2.ContainerEventResponse(
            container_id=self.event.id,
            container_event_type=EVENT_TYPE[self.event.kind],
            created_at=self.event.timestamp_ns,
            containers_statuses=[container_status(r) for r in self.containers],
        )
        if self.sandbox is not None:
            msg.pod_sandbox_status.CopyFrom(sandbox_status(self.sandbox, self.sandbox_ready))
        return msg


class ContainerEventFeed:
    """Subscribed to the daemon's bus from before recovery; streams subscribe to it."""

    def __init__(
        self,
        bus: EventBus,
        sandboxes: SandboxStore,
        containers: ContainerStore,
        buffer: int = EVENT_BUFFER,
        replay_s: float = RECOVERY_REPLAY_S,
    ) -> None:
        self._sandboxes = sandboxes
        self._containers = containers
        self._buffer = buffer
        self._replay_s = replay_s
        self._out: Hub[PodEvent] = Hub()
        self._streams: set[Subscription[PodEvent]] = set()
        # recovery's events until serving starts; kept for `replay_s` after that
        self._backlog: collections.deque[PodEvent] | None = collections.deque(maxlen=buffer)
        self._serving_since: float | None = None
        self.captured = 0
        bus.subscribe(self._capture)

    def _capture(self, event: LifecycleEvent) -> None:
        recovering = self._serving_since is None
        if not self._streams and not recovering:
            return  # nobody listens: no snapshot
        item = self.snapshot(event)
        self.captured += 1
        if recovering and self._backlog is not None:
            self._backlog.append(item)
        self._out.publish(item)

    def snapshot(self, event: LifecycleEvent) -> PodEvent:
        if event.subject is Subject.SANDBOX:
            sandbox: SandboxRecord | None = event.record  # type: ignore[assignment]
        else:
            sandbox = self._sandboxes.current(event.pod_id)
        removed = event.subject is Subject.SANDBOX and event.kind is EventKind.DELETED
        ready = sandbox is not None and not removed and self._sandboxes.is_ready(sandbox)
        # newest first, as kubelet orders a pod's container statuses (latest attempt first)
        containers = tuple(
            sorted(
                (r for r in self._containers.in_pod(event.pod_id) if r.state != ContainerState.CREATING),
                key=lambda r: r.created_at,
                reverse=True,
            )
        )
        return PodEvent(event, sandbox, ready, containers)

    def serving(self) -> None:
        """The daemon serves: recovery is over, its backlog is replayed for a while."""
        self._serving_since = time.monotonic()

    def _backlog_items(self) -> tuple[PodEvent, ...]:
        if self._backlog is None:
            return ()
        since = self._serving_since
        if since is not None and time.monotonic() - since > self._replay_s:
            self._backlog = None
            return ()
        return tuple(self._backlog)

    def subscription(self) -> Subscription[PodEvent]:
        """A stream's queue: the recovery backlog (while it is kept), then every new event."""
        sub = self._out.subscription(self._buffer, Overflow.CLOSE)
        for item in self._backlog_items():
            sub.deliver(item)
        self._streams.add(sub)
        return sub

    def release(self, sub: Subscription[PodEvent]) -> None:
        sub.close()
        self._streams.discard(sub)

    @property
    def streams(self) -> int:
        return len(self._streams)

    def close(self) -> None:
        """Shutdown: every stream ends after what it has queued."""
        for sub in tuple(self._streams):
            self.release(sub)
