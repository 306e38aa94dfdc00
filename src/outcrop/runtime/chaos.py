"""Fault injection for invocations: rules set through ``/_outcrop/chaos``, applied per serving Region.

A rule ``{"region", "model"?, "fault", "probability"?, "latencyMs"?}`` matches invocations served in
``region`` (and of ``model``, a glob, when given). Before the backend is called, each matching rule
fires with its probability (default 1):

* ``throttle`` → ThrottlingException (429) "Too many requests, please wait before trying again."
* ``error``    → ModelErrorException (424), as when the model itself fails
* ``outage``   → ServiceUnavailableException (503), as when the Region cannot serve
* ``latency``  → waits ``latencyMs`` before the call (adds to time to first token)

Rules are kept in the store (table ``chaos_rules``), so every server process sharing the database
(``--workers``, replicas on PostgreSQL) applies the same ones. Invocations never read the database
themselves: each process caches the rules and re-reads them at most every ``REFRESH_SECONDS``, and at
once after it changes them itself. Without a store (embedded use, unit tests) they live in memory.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import SQLAlchemyError

from outcrop.errors import ModelError, ServiceUnavailable, Throttled, ValidationError
from outcrop.generations import CHAOS, Generations, Watch
from outcrop.store.engine import Store
from outcrop.store.schema import chaos_rules

log = logging.getLogger("outcrop.chaos")
FAULTS = ("throttle", "error", "outage", "latency")
# How stale another process's change may be when an invocation reads the rules.
REFRESH_SECONDS = 0.25


@dataclass(frozen=True)
class ChaosRule:
    id: str
    region: str
    model: str | None
    fault: str
    probability: float
    latency_ms: int

    def matches(self, region: str, model_id: str) -> bool:
        return fnmatch.fnmatchcase(region, self.region) and (
            self.model is None or fnmatch.fnmatchcase(model_id, self.model)
        )

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "region": self.region, "fault": self.fault,
                               "probability": self.probability}
        if self.model is not None:
            out["model"] = self.model
        if self.fault == "latency":
            out["latencyMs"] = self.latency_ms
        return out


MAX_PATTERN = 256  # characters of a region or model glob
MAX_LATENCY_MS = 600_000  # ten minutes: longer than any routing deadline outcrop allows to be useful


def parse_rule(raw: Mapping[str, Any], rule_id: str | None = None) -> ChaosRule:
    problems = []
    region, fault, model = raw.get("region"), raw.get("fault"), raw.get("model")
    probability, latency = raw.get("probability", 1.0), raw.get("latencyMs", 0)
    if not isinstance(region, str) or not region or len(region) > MAX_PATTERN:
        problems.append(f"region: a Region name (or glob) of at most {MAX_PATTERN} characters is required")
    if fault not in FAULTS:
        problems.append(f"fault: must be one of {', '.join(FAULTS)}")
    if model is not None and (not isinstance(model, str) or len(model) > MAX_PATTERN):
        problems.append(f"model: must be a model ID (or glob) of at most {MAX_PATTERN} characters")
    if not isinstance(probability, int | float) or isinstance(probability, bool) or not 0 <= probability <= 1:
        problems.append("probability: must be a number from 0 to 1")
    if not isinstance(latency, int) or isinstance(latency, bool) or not 0 <= latency <= MAX_LATENCY_MS:
        problems.append(f"latencyMs: must be a whole number of milliseconds from 0 to {MAX_LATENCY_MS}")
    if fault == "latency" and not latency:
        problems.append(f"latencyMs: a latency rule needs a latencyMs from 1 to {MAX_LATENCY_MS}")
    unknown = set(raw) - {"region", "model", "fault", "probability", "latencyMs"}
    if unknown:
        problems.append(f"unknown fields: {', '.join(sorted(unknown))}")
    if problems:
        raise ValidationError("Invalid chaos rule: " + "; ".join(problems) + ".")
    return ChaosRule(rule_id or secrets.token_hex(6), str(region), model, str(fault), float(probability),
                     int(latency))


def _stored(row: Mapping[str, Any]) -> ChaosRule:
    raw = orjson.loads(row["rule"])
    raw.pop("id", None)
    return parse_rule(raw, row["rule_id"])


class Chaos:
    """The chaos rules of this server: in the store when ``attach``ed to one, else in memory."""

    def __init__(self, rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rng = rng or random.Random()
        self.clock = clock
        self.store: Store | None = None
        self._rules: tuple[ChaosRule, ...] = ()
        self._loaded_at = float("-inf")
        self._loading: asyncio.Future[None] | None = None
        # Reads may overlap (PostgreSQL reads run in threads): only a later-started read replaces the rules.
        self._reads_started = 0
        self._read_applied = 0
        self._changes: Watch | None = None

    def attach(self, store: Store, generations: Generations | None = None) -> None:
        """Share rules with every process on ``store`` from now on; with ``generations``, a change made
        through another worker of this server is read at once (else within ``REFRESH_SECONDS``)."""
        self.store = store
        self._loaded_at = float("-inf")
        self._changes = Watch(generations, CHAOS) if generations is not None else None

    async def rules(self, fresh: bool = False) -> tuple[ChaosRule, ...]:
        """The rules in force: read now when ``fresh`` or changed through a worker of this server; else as
        cached, refreshed every ``REFRESH_SECONDS`` (for other servers on the database) by a read in the
        background: invocations wait for the first read only, never for a refresh."""
        if self.store is None:
            return self._rules
        if fresh or (self._changes is not None and self._changes.changed()):
            await self._load(self.store)
        elif self.clock() - self._loaded_at >= REFRESH_SECONDS:
            loading = self._loading
            if loading is None:  # one read at a time
                loading = self._loading = asyncio.ensure_future(self._load(self.store))
                loading.add_done_callback(self._loaded)
            if self._loaded_at == float("-inf"):  # nothing read yet: no rules to go on
                await asyncio.shield(loading)
        return self._rules

    async def add(self, raw: Mapping[str, Any]) -> ChaosRule:
        rule = parse_rule(raw)
        if self.store is None:
            self._rules += (rule,)
            return rule
        row = {"rule_id": rule.id, "rule": orjson.dumps(rule.describe()).decode(),
               "created_us": time.time_ns() // 1000}
        await self.store.write(lambda conn: conn.execute(insert(chaos_rules).values(row)))
        self._changed()
        await self.rules(fresh=True)
        return rule

    async def remove(self, rule_id: str) -> bool:
        if self.store is None:
            kept = tuple(r for r in self._rules if r.id != rule_id)
            removed, self._rules = len(kept) != len(self._rules), kept
            return removed

        def remove(conn: Connection) -> int:
            return conn.execute(delete(chaos_rules).where(chaos_rules.c.rule_id == rule_id)).rowcount

        removed = await self.store.write(remove) > 0
        if removed:
            self._changed()
        await self.rules(fresh=True)
        return removed

    async def clear(self) -> None:
        if self.store is None:
            self._rules = ()
            return
        await self.store.write(lambda conn: conn.execute(delete(chaos_rules)))
        self._changed()
        await self.rules(fresh=True)

    def _changed(self) -> None:
        """Tell the other workers of this server (``rules`` reads them again here right after)."""
        if self._changes is not None:
            self._changes.bump()  # this worker's own change is read below, not once more

    async def apply(self, region: str, model_id: str) -> None:
        """Raise (or delay) as the matching rules say."""
        for rule in await self.rules():
            if not rule.matches(region, model_id) or self.rng.random() >= rule.probability:
                continue
            if rule.fault == "latency":
                # At least the whole delay: an event loop's timer may fire a little early (libuv's clock is
                # read once per loop iteration), and a test that asks for 400 ms must see 400 ms.
                until = time.monotonic() + rule.latency_ms / 1000
                while (left := until - time.monotonic()) > 0:
                    await asyncio.sleep(left)
            elif rule.fault == "throttle":
                raise Throttled("Too many requests, please wait before trying again.")
            elif rule.fault == "error":
                raise ModelError(f"The model returned an error in {region} (outcrop chaos rule {rule.id}).",
                                 originalStatusCode=500)
            else:
                raise ServiceUnavailable(f"The service is unavailable in {region} (outcrop chaos rule {rule.id}).")

    async def _load(self, store: Store) -> None:
        started = self.clock()
        self._reads_started += 1
        this_read = self._reads_started
        query = select(chaos_rules.c.rule_id, chaos_rules.c.rule).order_by(chaos_rules.c.created_us,
                                                                           chaos_rules.c.rule_id)
        try:
            rows = await store.read(lambda conn: [dict(r) for r in conn.execute(query).mappings()])
        except SQLAlchemyError:
            # A test tool must not fail invocations: keep the rules last read and try again later.
            log.warning("could not read the chaos rules; keeping the %d last read", len(self._rules), exc_info=True)
            self._loaded_at = started
            return
        if this_read > self._read_applied:
            self._rules, self._read_applied, self._loaded_at = tuple(_stored(r) for r in rows), this_read, started

    def _loaded(self, _: asyncio.Future[None]) -> None:
        self._loading = None
