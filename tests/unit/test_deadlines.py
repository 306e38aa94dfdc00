"""``outcrop.deadlines.within``: asyncio.timeout's behaviour, one loop timer per loop."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop

from outcrop import deadlines
from outcrop.deadlines import RESOLUTION, within

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def run(request):
    def run(coro):
        loop = LOOPS[request.param]()
        try:
            return loop.run_until_complete(coro)
        finally:
            loop.close()

    return run


def test_a_limit_that_expires_raises_timeout_error_near_its_time(run):
    async def main():
        started = time.monotonic()
        with pytest.raises(TimeoutError), within(0.05):
            await asyncio.sleep(5)
        return time.monotonic() - started

    elapsed = run(main())
    assert 0.05 - 0.002 <= elapsed < 0.05 + RESOLUTION + 0.2


def test_a_block_that_ends_in_time_is_left_alone(run):
    async def main():
        with within(0.05) as limit:
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)  # past the limit's time: nothing may cancel the task now
        return limit

    limit = run(main())
    assert not limit.expired


def test_nested_limits_each_raise_for_themselves(run):
    async def main():
        outcome = []
        with within(5) as outer:
            try:
                with within(0.03):
                    await asyncio.sleep(5)
            except TimeoutError:
                outcome.append("inner")
            await asyncio.sleep(0)  # the task is not left cancelled
            outcome.append("after")
        try:
            with within(0.03) as outer2, within(5):
                await asyncio.sleep(5)
        except TimeoutError:
            outcome.append("outer")
        return outcome, outer.expired, outer2.expired

    assert run(main()) == (["inner", "after", "outer"], False, True)


def test_a_cancel_from_outside_stays_a_cancel(run):
    async def body():
        with within(5):
            await asyncio.sleep(5)

    async def main():
        task = asyncio.ensure_future(body())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())


def test_a_limit_already_past_expires_at_the_next_await(run):
    async def main():
        with pytest.raises(TimeoutError), within(-1):
            await asyncio.sleep(1)
        with within(0):
            pass  # no await: nothing to cancel, and nothing left pending
        await asyncio.sleep(0.01)
        return "ok"

    assert run(main()) == "ok"


def test_an_exception_of_the_block_passes_through(run):
    async def main():
        with pytest.raises(KeyError), within(5):
            raise KeyError("x")

    run(main())


def test_many_limits_on_many_tasks_expire_only_those_due(run):
    async def worker(seconds: float, sleep: float) -> str:
        try:
            with within(seconds):
                await asyncio.sleep(sleep)
            return "done"
        except TimeoutError:
            return "timeout"

    async def main():
        plan = [(0.02 + (i % 5) * 0.02, 0.07) for i in range(200)]
        results = await asyncio.gather(*(worker(s, sleep) for s, sleep in plan))
        return [(s, r) for (s, _), r in zip(plan, results, strict=True)]

    for seconds, result in run(main()):
        if seconds < 0.07 - RESOLUTION - 0.005:
            assert result == "timeout", seconds
        elif seconds > 0.07 + 0.005:
            assert result == "done", seconds


def test_slots_of_ended_limits_are_dropped_when_the_timer_passes_them(run):
    async def main():
        for _ in range(50):
            with within(0.02):
                await asyncio.sleep(0)
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.05)
        timers = deadlines._timers(asyncio.get_running_loop())
        return len(timers.slots), len(timers.due), timers.armed

    assert run(main()) == (0, 0, None)


def test_outside_a_task_is_an_error():
    loop = asyncio.new_event_loop()
    try:
        loop.call_soon(lambda: None)

        async def main():
            return within(1)

        assert loop.run_until_complete(main()) is not None  # inside a task: fine
        with pytest.raises(RuntimeError):
            within(1)  # no running loop at all
    finally:
        loop.close()
