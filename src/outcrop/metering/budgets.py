"""Budgets on application profiles, and the tag snapshot every invocation carries.

AWS has no budgets on inference profiles; outcrop reads them from the profile's own tags, managed with
the ordinary TagResource / UntagResource calls:

    outcrop:budget-usd-daily      outcrop:budget-usd-monthly
    outcrop:budget-tokens-daily   outcrop:budget-tokens-monthly

Once the period's spend (USD, or input + output tokens) reaches the value, the profile admits no more
invocations (ServiceQuotaExceededException, naming the budget) until the period turns (UTC midnight,
the first of the month) or the tag is raised or removed. Spend = the day rollups of the profile (in the
database) plus this process's events not yet stored there, so a burst cannot overrun a budget by more
than what other processes have in flight. An invocation already admitted completes and is billed.

Tags are read at admission through a small cache: invalidated at once by Tag/UntagResource in this
process and (``outcrop.generations``) in the other workers of this server, and after ``TAG_TTL`` seconds
in servers with another data directory. Spend read from the database is cached for ``SPEND_TTL``
seconds, and dropped whenever this process commits events of the profile, and whenever any ingester of
this server stores events of a profile with a budget (``generations.SPEND``, which every event carrying
a budget tag bumps once it is stored): another worker's spend counts here once it is stored, within the
ingester's pace (0.25 s), not once the cache expires. Servers with another data directory see it after
``SPEND_TTL``.
"""

from __future__ import annotations

import calendar
import datetime as dt
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlalchemy import Connection, func, select

from outcrop.control.tags import tags_of
from outcrop.errors import ServiceQuotaExceeded
from outcrop.expiring import Expiring
from outcrop.generations import Watch
from outcrop.metering.prices import PICO_PER_USD
from outcrop.metering.rollups import DAY_US
from outcrop.store.engine import Store
from outcrop.store.schema import usage_rollups

TAG_TTL = 5.0
SPEND_TTL = 1.0
BUDGET_PREFIX = "outcrop:budget-"
UNITS = ("usd", "tokens")
PERIODS = ("daily", "monthly")


@dataclass(frozen=True)
class Budget:
    tag: str
    unit: str  # usd | tokens
    period: str  # daily | monthly
    limit: Decimal


def budgets_in(tags: dict[str, str]) -> list[Budget]:
    found = []
    for key, value in tags.items():
        if not key.startswith(BUDGET_PREFIX):
            continue
        parts = key[len(BUDGET_PREFIX):].split("-")
        if len(parts) != 2 or parts[0] not in UNITS or parts[1] not in PERIODS:
            continue
        try:
            limit = Decimal(value.strip())
        except InvalidOperation:
            continue  # not a number: not a budget (TagResource accepts any value)
        if not limit.is_finite() or limit < 0:
            continue  # NaN, infinities and negative amounts are not budgets either
        found.append(Budget(key, parts[0], parts[1], limit))
    return found


def period_bounds(period: str, now_us: int) -> tuple[int, int]:
    """[start, end) of the UTC day or month holding ``now_us``."""
    if period == "daily":
        start = now_us - now_us % DAY_US
        return start, start + DAY_US
    day = dt.datetime.fromtimestamp(now_us / 1e6, dt.UTC)
    first = dt.datetime(day.year, day.month, 1, tzinfo=dt.UTC)
    days = calendar.monthrange(day.year, day.month)[1]
    start = int(first.timestamp()) * 1_000_000
    return start, start + days * DAY_US


class TagCache:
    """The tags of application profiles, as of a few seconds ago at most."""

    def __init__(self, store: Store, ttl: float = TAG_TTL, changes: Watch | None = None) -> None:
        """``changes``: tags changed through another worker of this server (``outcrop.generations``)."""
        self.store = store
        self._entries: Expiring[tuple[str, str, str], dict[str, str]] = Expiring(ttl)
        self._changes = changes

    def cached(self, account: str, region: str, profile_id: str) -> dict[str, str] | None:
        """The tags if they are known and fresh, else None (``get`` reads them), without a coroutine."""
        if self._changes is not None and self._changes.changed():
            self._entries.clear()
            return None
        return self._entries.get((account, region, profile_id), self._entries.clock())

    async def get(self, account: str, region: str, profile_id: str) -> dict[str, str]:
        key = (account, region, profile_id)
        now = self._entries.clock()
        tags = self._entries.get(key, now)
        if tags is None:
            tags = await self.store.read(lambda conn: tags_of(conn, account, region, profile_id))
            self._entries.put(key, tags, now)
        return tags

    def invalidate(self, account: str, region: str, profile_id: str) -> None:
        self._entries.forget((account, region, profile_id))


class Spend:
    """Per-profile spend by day: committed (database, cached) plus pending (this process's, not yet stored)."""

    def __init__(
        self, store: Store, ttl: float = SPEND_TTL, settle: Callable[[], None] | None = None,
        not_stored: Callable[[str, str], list[tuple[int, int, int]]] | None = None, stored: Watch | None = None,
    ) -> None:
        """``settle``: called before each read, to take what has been stored since out of the pending spend.
        ``not_stored``: the (time, pUSD, tokens) of a profile's events not stored yet, asked once, when the
        profile's spend is first read. ``stored``: spend against a budget stored by any ingester of this
        server (``generations.SPEND``); the cached committed spend is read again when it moves.

        Pending spend is kept only for the profiles whose spend has been read (those with a budget: the
        ``watched`` set), so that an invocation through any other profile costs nothing here."""
        self.store = store
        self.ttl = ttl
        self._settle = settle
        self._not_stored = not_stored
        self._stored = stored
        self.watched: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        # (account, profile ARN) → day start → [pUSD, tokens]
        self._pending: dict[tuple[str, str], dict[int, list[int]]] = defaultdict(dict)
        self._generation: dict[tuple[str, str], int] = defaultdict(int)
        self._announced = 0  # announcements of ``stored`` seen: a read begun before one is not cached
        self._cache: dict[tuple[str, str, int, int], tuple[float, int, int, int]] = {}

    def add_pending(self, account: str, profile_arn: str, time_us: int, pusd: int, tokens: int, sign: int = 1) -> None:
        day = time_us - time_us % DAY_US
        with self._lock:
            row = self._pending[(account, profile_arn)].setdefault(day, [0, 0])
            row[0] += sign * pusd
            row[1] += sign * tokens
            if sign < 0:
                if pusd or tokens:  # stored now: the cached committed spend lacks it (a refusal costs nothing)
                    self._generation[(account, profile_arn)] += 1
                if row == [0, 0]:
                    del self._pending[(account, profile_arn)][day]

    async def spent(self, account: str, profile_arn: str, start: int, end: int) -> tuple[int, int]:
        """(pUSD, tokens) of the profile in [start, end)."""
        if self._settle is not None:
            self._settle()
        key = (account, profile_arn)
        if key not in self.watched:
            self.watched.add(key)  # from now on its events are added as they are emitted
            for time_us, pusd, tokens in self._not_stored(account, profile_arn) if self._not_stored else ():
                self.add_pending(account, profile_arn, time_us, pusd, tokens)
        self._look_for_stored()
        announced = self._announced
        cache_key = (account, profile_arn, start, end)
        now = time.monotonic()
        cached = self._cache.get(cache_key)
        with self._lock:
            generation = self._generation[key]
        if cached is not None and cached[0] > now and cached[1] == generation:
            committed = (cached[2], cached[3])
        else:
            committed = await self.store.read(lambda conn: _committed(conn, account, profile_arn, start, end))
            self._look_for_stored()
            with self._lock:
                if self._generation[key] == generation and self._announced == announced:
                    self._cache[cache_key] = (now + self.ttl, generation, *committed)
        with self._lock:
            pending = [v for day, v in self._pending.get(key, {}).items() if start <= day < end]
        return committed[0] + sum(p[0] for p in pending), committed[1] + sum(p[1] for p in pending)

    def _look_for_stored(self) -> None:
        """Drop the cached committed spend if an ingester of this server stored spend against a budget since."""
        if self._stored is not None and self._stored.changed():
            self._announced += 1
            self._cache.clear()


def has_budget(tags: dict[str, str] | None) -> bool:
    """Whether an event's tags name a budget (the ingester then tells the workers, ``generations.SPEND``)."""
    return tags is not None and any(key.startswith(BUDGET_PREFIX) for key in tags)


def _committed(conn: Connection, account: str, profile_arn: str, start: int, end: int) -> tuple[int, int]:
    c = usage_rollups.c
    row = conn.execute(
        select(func.coalesce(func.sum(c.cost_pusd), 0), func.coalesce(func.sum(c.input_tokens + c.output_tokens), 0))
        .where(c.account == account, c.granularity == "d", c.tag_key == "", c.period_us >= start,
               c.period_us < end, c.profile_arn == profile_arn)
    ).one()
    return int(row[0]), int(row[1])


async def check_budgets(spend: Spend, account: str, profile_arn: str, tags: dict[str, str], now_us: int) -> None:
    """Refuse the invocation if any budget of the profile is spent."""
    for budget in budgets_in(tags):
        start, end = period_bounds(budget.period, now_us)
        pusd, tokens = await spend.spent(account, profile_arn, start, end)
        used = Decimal(pusd) / PICO_PER_USD if budget.unit == "usd" else Decimal(tokens)
        if used >= budget.limit:
            unit = "USD" if budget.unit == "usd" else "tokens"
            turns = dt.datetime.fromtimestamp(end / 1e6, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            raise ServiceQuotaExceeded(
                f"The {budget.period} budget of {budget.limit} {unit} of inference profile {profile_arn} "
                f"(tag {budget.tag}) is spent: {used.normalize():f} {unit} this period. It admits invocations "
                f"again at {turns}, or when the tag is raised or removed."
            )
