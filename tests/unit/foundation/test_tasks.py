"""Owned background work, single flights and per-id locks."""

from __future__ import annotations

import asyncio

import pytest

from cri_py.errors import DeadlineExceeded
from cri_py.tasks import KeyedLocks, SingleFlight, TaskOwner, within


def test_a_lock_is_shared_by_everyone_queued_on_it() -> None:
    """Holders and waiters of one id share one lock; it goes only when nobody needs it."""

    async def scenario() -> None:
        locks = KeyedLocks()
        order: list[str] = []
        release_a = asyncio.Event()

        async def user(name: str, hold: asyncio.Event | None = None) -> None:
            async with locks.hold("pod"):
                order.append(f"{name} in")
                if hold is not None:
                    await hold.wait()
                await asyncio.sleep(0)
                order.append(f"{name} out")

        a = asyncio.create_task(user("a", release_a))
        await asyncio.sleep(0)
        b = asyncio.create_task(user("b"))
        await asyncio.sleep(0)
        release_a.set()
        await asyncio.sleep(0)
        c = asyncio.create_task(user("c"))  # arrives while b is next in line or holding
        await asyncio.gather(a, b, c)
        assert order == ["a in", "a out", "b in", "b out", "c in", "c out"]
        assert len(locks) == 0

    asyncio.run(scenario())


def test_shielded_work_outlives_its_caller_until_the_owner_closes() -> None:
    async def scenario() -> None:
        owner = TaskOwner()
        finished = asyncio.Event()
        cancelled = asyncio.Event()

        async def work(wait: float) -> None:
            try:
                await asyncio.sleep(wait)
                finished.set()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        caller = asyncio.create_task(owner.shielded(work(0.05)))
        await asyncio.sleep(0)
        caller.cancel()
        await asyncio.sleep(0.1)
        assert finished.is_set()  # the caller went, the work did not
        owner.spawn(work(10))
        await asyncio.sleep(0)
        await owner.close()
        assert cancelled.is_set() and len(owner) == 0
        with pytest.raises(RuntimeError):
            owner.spawn(work(0))

    asyncio.run(scenario())


def test_single_flight_shares_one_run_per_key() -> None:
    async def scenario() -> None:
        owner = TaskOwner()
        flights: SingleFlight[int] = SingleFlight(owner)
        runs = 0

        async def work() -> int:
            nonlocal runs
            runs += 1
            await asyncio.sleep(0.01)
            return runs

        assert await asyncio.gather(flights.run("k", work), flights.run("k", work)) == [1, 1]
        assert await flights.run("k", work) == 2  # a finished flight is not reused
        await owner.close()

    asyncio.run(scenario())


def test_within_turns_running_out_into_deadline_exceeded() -> None:
    async def scenario() -> None:
        with pytest.raises(DeadlineExceeded, match="teardown did not finish"):
            await within(0.01, asyncio.sleep(1), "teardown")
        assert await within(1, asyncio.sleep(0, "ok"), "quick") == "ok"

    asyncio.run(scenario())


def test_a_time_limit_below_an_rpc_is_deadline_exceeded_never_internal() -> None:
    from cri_py.oci.process import run
    from cri_py.server.errors import status_code_for

    # a runtime call that outlives its limit is killed and reported as a deadline
    with pytest.raises(DeadlineExceeded, match="did not finish in 0.2 s") as caught:
        asyncio.run(run(["sleep", "5"], time_limit=0.2))
    assert status_code_for(caught.value).name == "DEADLINE_EXCEEDED"
    # and a bare TimeoutError from anywhere below maps to the same code
    assert status_code_for(TimeoutError()).name == "DEADLINE_EXCEEDED"
    assert status_code_for(RuntimeError()).name == "UNKNOWN"
