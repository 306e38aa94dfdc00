"""Pending spend: kept only for the profiles whose budgets are checked, yet complete from the first check."""

from __future__ import annotations

import asyncio
from typing import Any

from outcrop.metering.budgets import DAY_US, Spend

ACCOUNT, RED, BLUE = "123456789012", "arn:red", "arn:blue"
DAY = 20_000 * DAY_US


class _Store:
    """Nothing committed yet: every figure comes from the pending spend."""

    async def read(self, fn: Any) -> tuple[int, int]:
        return 0, 0


def test_a_profile_first_checked_counts_its_events_not_yet_stored_then_follows_new_ones() -> None:
    backlog = {RED: [(DAY + 1, 500, 7), (DAY + 2, 250, 3), (DAY - DAY_US, 999, 99)]}  # the last: the day before
    asked: list[str] = []

    def not_stored(account: str, arn: str) -> list[tuple[int, int, int]]:
        asked.append(arn)
        return backlog.get(arn, [])

    spend = Spend(_Store(), not_stored=not_stored)  # type: ignore[arg-type]
    assert spend.watched == set()

    async def check() -> None:
        assert await spend.spent(ACCOUNT, RED, DAY, DAY + DAY_US) == (750, 10)
        assert (ACCOUNT, RED) in spend.watched and (ACCOUNT, BLUE) not in spend.watched
        spend.add_pending(ACCOUNT, RED, DAY + 3, 100, 1)  # what the meter adds once the profile is watched
        assert await spend.spent(ACCOUNT, RED, DAY, DAY + DAY_US) == (850, 11)
        spend.add_pending(ACCOUNT, RED, DAY + 1, 500, 7, sign=-1)  # stored: now in the committed figure
        assert await spend.spent(ACCOUNT, RED, DAY, DAY + DAY_US) == (350, 4)
        assert await spend.spent(ACCOUNT, BLUE, DAY, DAY + DAY_US) == (0, 0)

    asyncio.run(check())
    assert asked == [RED, BLUE]  # the backlog is read once per profile, on its first check


def test_a_budget_tag_that_is_not_a_finite_amount_is_no_budget() -> None:
    """TagResource takes any value; before, ``NaN`` made every invocation through the profile a 500 (the
    comparison raised) and ``-Infinity`` refused them all as spent."""
    from decimal import Decimal

    from outcrop.metering.budgets import budgets_in

    tags = {f"outcrop:budget-tokens-{p}": v for p, v in (("daily", "NaN"), ("monthly", "-Infinity"))}
    assert budgets_in({**tags, "outcrop:budget-usd-daily": "sNaN"}) == []
    assert budgets_in({"outcrop:budget-usd-monthly": "-1"}) == []
    assert [b.limit for b in budgets_in({"outcrop:budget-usd-monthly": " 12.5 "})] == [Decimal("12.5")]


class _Counting:
    """A committed figure that the test moves, and how often it was read."""

    def __init__(self) -> None:
        self.committed = (0, 0)
        self.reads = 0

    async def read(self, fn: Any) -> tuple[int, int]:
        self.reads += 1
        return self.committed


def test_spend_another_worker_stored_is_read_again_at_once_not_after_the_cache_expires() -> None:
    from outcrop.generations import SPEND, Generations, Watch

    generations = Generations()
    store = _Counting()
    spend = Spend(store, ttl=3600, stored=Watch(generations, SPEND))  # type: ignore[arg-type]

    async def check() -> None:
        assert await spend.spent(ACCOUNT, RED, DAY, DAY + DAY_US) == (0, 0)
        store.committed = (900, 40)  # another worker's ingester stored spend of a budgeted profile …
        assert await spend.spent(ACCOUNT, RED, DAY, DAY + DAY_US) == (0, 0)  # … not announced: the cache holds
        assert store.reads == 1
        generations.bump(SPEND)  # … announced
        assert await spend.spent(ACCOUNT, RED, DAY, DAY + DAY_US) == (900, 40)
        assert await spend.spent(ACCOUNT, RED, DAY, DAY + DAY_US) == (900, 40)
        assert store.reads == 2  # read once per announcement, not per check

    asyncio.run(check())


def test_a_stored_refusal_keeps_the_cached_spend() -> None:
    """Refusals and failures are events of the profile that cost nothing: storing one moves no total, so
    it must not cost a read of the database."""
    store = _Counting()
    spend = Spend(store, ttl=3600)  # type: ignore[arg-type]

    async def check() -> None:
        assert await spend.spent(ACCOUNT, RED, DAY, DAY + DAY_US) == (0, 0)
        spend.add_pending(ACCOUNT, RED, DAY + 5, 0, 0)
        spend.add_pending(ACCOUNT, RED, DAY + 5, 0, 0, sign=-1)
        assert await spend.spent(ACCOUNT, RED, DAY, DAY + DAY_US) == (0, 0)
        assert store.reads == 1
        spend.add_pending(ACCOUNT, RED, DAY + 6, 10, 1)
        spend.add_pending(ACCOUNT, RED, DAY + 6, 10, 1, sign=-1)  # stored: the committed figure must be read
        store.committed = (10, 1)
        assert await spend.spent(ACCOUNT, RED, DAY, DAY + DAY_US) == (10, 1)
        assert store.reads == 2

    asyncio.run(check())


class _Slow:
    """Reads that see the committed figure as it was when they began, and finish when the test says."""

    def __init__(self) -> None:
        self.committed = (0, 0)
        self.gates: list[asyncio.Event] = []

    async def read(self, fn: Any) -> tuple[int, int]:
        seen = self.committed
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        return seen


def test_a_read_begun_before_another_workers_spend_was_announced_is_not_cached_after_it() -> None:
    from outcrop.generations import SPEND, Generations, Watch

    generations = Generations()
    store = _Slow()
    spend = Spend(store, ttl=3600, stored=Watch(generations, SPEND))  # type: ignore[arg-type]

    async def check() -> None:
        early = asyncio.create_task(spend.spent(ACCOUNT, RED, DAY, DAY + DAY_US))  # reads (0, 0) …
        await asyncio.sleep(0)
        store.committed = (900, 40)  # … while another worker's ingester stores spend …
        generations.bump(SPEND)  # … and announces it
        late = asyncio.create_task(spend.spent(ACCOUNT, RED, DAY, DAY + DAY_US))  # sees the announcement
        await asyncio.sleep(0)
        store.gates[1].set()
        assert await late == (900, 40)
        store.gates[0].set()
        assert await early == (0, 0)  # begun before: it may say so once …
        third = asyncio.create_task(spend.spent(ACCOUNT, RED, DAY, DAY + DAY_US))
        await asyncio.sleep(0)
        for gate in store.gates:
            gate.set()
        assert await third == (900, 40)  # … but not be cached for the next hour

    asyncio.run(check())
