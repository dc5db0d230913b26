"""The event bus: sinks and buffered subscriptions; a subscriber never holds up the producer."""

from __future__ import annotations

import asyncio

import pytest

from cri_py.api import api_pb2
from cri_py.container.model import ContainerRecord
from cri_py.container.state import ContainerState
from cri_py.events import (
    EventBus,
    EventKind,
    LifecycleEvent,
    Overflow,
    Subject,
    SubscriptionClosed,
    SubscriptionLagged,
)
from cri_py.store.codec import encode_message


def _record(cid: str = "c1") -> ContainerRecord:
    return ContainerRecord(
        id=cid, pod_id="p1", name="n", attempt=0, state=ContainerState.CREATED, created_at=1,
        runtime_handler="runc", config_b64=encode_message(api_pb2.ContainerConfig()), image_id="i",
        image_ref="i", image_name="i", bundle="/b",
    )  # fmt: skip


def _event(n: int, kind: EventKind = EventKind.CREATED) -> LifecycleEvent:
    return LifecycleEvent(kind, Subject.CONTAINER, f"c{n}", "p1", n, _record(f"c{n}"))


def test_sinks_get_every_event_in_order_and_a_broken_one_harms_nobody() -> None:
    bus = EventBus()
    seen: list[str] = []

    def broken(event: LifecycleEvent) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(broken)
    unsubscribe = bus.subscribe(lambda e: seen.append(e.id))
    for n in range(3):
        bus.publish(_event(n))
    unsubscribe()
    bus.publish(_event(9))
    assert seen == ["c0", "c1", "c2"]
    assert bus.subscribers == 1


def test_a_subscription_reads_at_its_own_pace() -> None:
    async def scenario() -> None:
        bus = EventBus()
        with bus.subscription(maxsize=10) as sub:
            reader = asyncio.create_task(_collect(sub, 3))
            await asyncio.sleep(0)
            for n in range(3):
                bus.publish(_event(n))  # returns at once: nothing awaits the reader
            assert [e.id for e in await reader] == ["c0", "c1", "c2"]
        assert bus.subscribers == 0

    asyncio.run(scenario())


async def _collect(sub: object, count: int) -> list[LifecycleEvent]:
    out = []
    async for event in sub:  # type: ignore[attr-defined]
        out.append(event)
        if len(out) == count:
            break
    return out


@pytest.mark.parametrize(
    ("policy", "kept"),
    [(Overflow.DROP_OLDEST, ["c3", "c4"]), (Overflow.DROP_NEWEST, ["c0", "c1"])],
)
def test_a_full_subscription_drops_by_its_policy(policy: Overflow, kept: list[str]) -> None:
    async def scenario() -> None:
        bus = EventBus()
        sub = bus.subscription(maxsize=2, overflow=policy)
        for n in range(5):
            bus.publish(_event(n))
        assert sub.dropped == 3
        sub.close()
        assert [e.id async for e in sub] == kept

    asyncio.run(scenario())


def test_a_lagging_subscription_that_chose_close_ends_with_an_error() -> None:
    async def scenario() -> None:
        bus = EventBus()
        sub = bus.subscription(maxsize=2, overflow=Overflow.CLOSE)
        for n in range(3):
            bus.publish(_event(n))
        assert bus.subscribers == 0  # it left the bus by itself
        assert (await sub.get()).id == "c0"
        assert (await sub.get()).id == "c1"
        with pytest.raises(SubscriptionLagged):
            await sub.get()

    asyncio.run(scenario())


def test_a_closed_subscription_wakes_its_reader() -> None:
    async def scenario() -> None:
        bus = EventBus()
        sub = bus.subscription()
        waiting = asyncio.create_task(sub.get())
        await asyncio.sleep(0)
        sub.close()
        with pytest.raises(SubscriptionClosed):
            await waiting

    asyncio.run(scenario())
