"""Lifecycle events: what changed, published once it is committed, to whoever subscribed.

The daemon owns one `EventBus`. The pod and container services publish from their single
transition path, after the store committed the change, so a subscriber never hears of a
state that a crash could undo. Publishing never waits for a subscriber:

- a *sink* (`subscribe`) is called synchronously on the event loop and must not block
  (a metrics counter is a sink);
- a `Subscription` is a sink with a bounded buffer of its own that a consumer reads at its
  own pace (a GetContainerEvents stream); what happens when it is full is the
  subscriber's `Overflow` policy, never the producer's problem.

    container: CREATING --(no event)--> CREATED [CREATED] --> RUNNING [STARTED]
               --> EXITED [STOPPED] --> removed [DELETED]
    sandbox:   CREATING --> READY [CREATED, STARTED] --> NOTREADY [STOPPED] --> removed [DELETED]

An object that never became visible (a create that failed and was unwound) publishes nothing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from cri_py.container.model import ContainerRecord
    from cri_py.pod.model import SandboxRecord

log = logging.getLogger(__name__)


class EventKind(enum.Enum):
    """The four kinds the CRI's ContainerEventType knows."""

    CREATED = "created"
    STARTED = "started"
    STOPPED = "stopped"
    DELETED = "deleted"


class Subject(enum.Enum):
    CONTAINER = "container"
    SANDBOX = "sandbox"


@dataclass(frozen=True)
class LifecycleEvent:
    kind: EventKind
    subject: Subject
    # the container's or the sandbox's id (GetContainerEvents names a sandbox by its id too)
    id: str
    # the sandbox the object belongs to (== id for a sandbox event)
    pod_id: str
    timestamp_ns: int
    # the record as committed with this change (immutable): enough to build a status
    # also for a DELETED event, when the store no longer has it
    record: ContainerRecord | SandboxRecord


Sink = Callable[[LifecycleEvent], None]
# what a hub carries: LifecycleEvent on the daemon's bus; derived feeds (GetContainerEvents'
# events with the pod's statuses) reuse the same hub and subscriptions for their own items
T = TypeVar("T")


class Overflow(enum.Enum):
    """What a full Subscription does with the next event."""

    DROP_OLDEST = "drop-oldest"  # keep the newest; `dropped` counts the loss
    DROP_NEWEST = "drop-newest"  # keep what is queued; `dropped` counts the loss
    CLOSE = "close"  # end the subscription: its reader gets SubscriptionLagged


class SubscriptionClosed(Exception):
    """The subscription was closed and everything it had queued was read."""


class SubscriptionLagged(SubscriptionClosed):
    """The subscriber fell behind by more than its buffer and chose `Overflow.CLOSE`."""


class Subscription(Generic[T]):
    """A bounded queue of events for one consumer; an async iterator and a context manager."""

    def __init__(self, bus: Hub[T], maxsize: int, overflow: Overflow) -> None:
        if maxsize < 1:
            raise ValueError("a subscription needs room for at least one event")
        self._bus = bus
        self._maxsize = maxsize
        self._overflow = overflow
        self._queue: collections.deque[T] = collections.deque()
        self._ready = asyncio.Event()
        self._closed = False
        self._lagged = False
        self.dropped = 0

    def deliver(self, event: T) -> None:
        """The sink the bus calls: never blocks."""
        if self._closed:
            return
        if len(self._queue) >= self._maxsize:
            self.dropped += 1
            if self._overflow is Overflow.DROP_NEWEST:
                return
            if self._overflow is Overflow.CLOSE:
                self._lagged = True
                self.close()
                return
            self._queue.popleft()
        self._queue.append(event)
        self._ready.set()

    async def get(self) -> T:
        """The next event; at the end SubscriptionClosed (SubscriptionLagged if it overflowed)."""
        while not self._queue:
            if self._closed:
                if self._lagged:
                    raise SubscriptionLagged(f"subscriber fell {self._maxsize} events behind")
                raise SubscriptionClosed("subscription closed")
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def get_nowait(self) -> T | None:
        return self._queue.popleft() if self._queue else None

    def close(self) -> None:
        """Stop receiving; a reader drains what is queued, then ends. Idempotent."""
        if not self._closed:
            self._closed = True
            self._bus.unsubscribe(self.deliver)
            self._ready.set()

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        while True:
            try:
                yield await self.get()
            except SubscriptionLagged:
                raise
            except SubscriptionClosed:
                return

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Hub(Generic[T]):
    """Publish/subscribe of items of one type; loop-thread only."""

    def __init__(self) -> None:
        self._sinks: list[Callable[[T], None]] = []

    def subscribe(self, sink: Callable[[T], None]) -> Callable[[], None]:
        """Call `sink` with every event from now on; returns the unsubscribe function."""
        self._sinks.append(sink)
        return lambda: self.unsubscribe(sink)

    def unsubscribe(self, sink: Callable[[T], None]) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def subscription(self, maxsize: int = 1000, overflow: Overflow = Overflow.DROP_OLDEST) -> Subscription[T]:
        """A buffered subscriber; close it (or use `with`) when done."""
        sub: Subscription[T] = Subscription(self, maxsize, overflow)
        self.subscribe(sub.deliver)
        return sub

    @property
    def subscribers(self) -> int:
        return len(self._sinks)

    def publish(self, event: T) -> None:
        # a copy: a sink may unsubscribe (a lagging Subscription closes itself) while called
        for sink in tuple(self._sinks):
            try:
                sink(event)
            except Exception:  # a broken subscriber must not fail the change that was committed
                log.exception("event subscriber failed", extra={"item": repr(event)[:200]})


@dataclass(frozen=True)
class Timing:
    """How long one call to something below us took: a runtime or CNI plugin call, a pull."""

    component: str  # "runtime", "cni", "image_pull"
    operation: str  # "create", "start", "kill", "ADD", "DEL", "pull", ...
    target: str  # the runtime handler, the CNI plugin type, the image
    seconds: float
    error: str = ""  # "" = it succeeded; else a short reason (the error's class)
    size: int = 0  # bytes, where that means something (pulls)


class EventBus(Hub[LifecycleEvent]):
    """Publish/subscribe for lifecycle events, owned by the daemon; loop-thread only.

    `timings` carries how long calls below the daemon took (metrics subscribe to it); `timed`
    measures one call, and costs nothing but a clock read when nobody listens.
    """

    def __init__(self) -> None:
        super().__init__()
        self.timings: Hub[Timing] = Hub()

    @contextlib.contextmanager
    def timed(self, component: str, operation: str, target: str = "") -> Iterator[None]:
        started = time.monotonic()
        error = ""
        try:
            yield
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            if self.timings.subscribers:
                self.timings.publish(Timing(component, operation, target, time.monotonic() - started, error))
