"""The metering pipeline: the runtime's record sink, the journal, and the writer that drains it.

Guarantee: **every invocation whose answer the client received has its usage event durable.** The
runtime awaits ``emit`` before an answer's last byte goes out (a whole response, an error, or the end
frame of a stream), and ``emit`` returns once the event's line is in this process's journal
(``outcrop.metering.journal``): written, so that the death of the process loses nothing, and fsync'd
within ``metering_fsync_interval_ms``; or, with ``metering_fsync = "always"``, written and fsync'd, one
write and one fsync per group of invocations. The hot path
never waits on the database: a drainer thread takes the events accumulated in memory every
``DRAIN_SECONDS`` (or at once past ``BATCH``) and commits them in one transaction that inserts the raw
events by request ID and adds each distinct rollup row's sums once (``outcrop.metering.rollups``). After ``kill -9`` the next process to
start on the same data directory (or any sibling worker) claims the dead process's journal and drains
it; events already in the database are skipped, so none is lost and none counted twice. A graceful
shutdown drains everything and leaves an empty journal.

Why a journal rather than group commit into the database: an fsync of an append-only file is the
cheapest durable write there is and does not depend on the database being fast or even reachable;
PostgreSQL down for a minute delays the reports, never the invocations. The cost is a local disk per
server process (``<data_dir>/metering``), which outcrop has anyway.

Abandoned streams are events too (outcome ``ClientDisconnected``, tokens counted up to the point the
client went away), as are throttles, failures and budget refusals.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError

from outcrop.control.catalog import Catalog
from outcrop.metering.budgets import Spend, TagCache, check_budgets
from outcrop.metering.events import UsageEvent, profile_of, usage_event
from outcrop.metering.journal import Journal, Orphan, claim_orphans
from outcrop.metering.metrics import MeteringMetrics
from outcrop.metering.prices import Prices
from outcrop.metering.rollups import ingest
from outcrop.store.engine import Store

if TYPE_CHECKING:
    from outcrop.runtime.invoke import InvocationRecord

log = logging.getLogger(__name__)

BATCH = 5000
SWITCH_INTERVAL = 0.0005
DRAIN_SECONDS = 0.25  # the drainer's pace: large batches, so that ingest costs the event loop little
ORPHAN_SCAN_SECONDS = 5.0
RETRY_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)


class Meter:
    """One per server process."""

    def __init__(
        self, store: Store, catalog: Catalog, directory: Path, registry: CollectorRegistry,
        prices: Prices | None = None, *, fsync: str = "interval", fsync_interval: float = 0.1,
    ) -> None:
        self.store = store
        self.prices = prices or Prices.load(catalog)
        self.tags = TagCache(store)
        self.spend = Spend(store)
        self.metrics = MeteringMetrics(registry, catalog.regions)
        self.directory = directory
        self.journal = Journal(directory, fsync=fsync, interval=fsync_interval)
        self._queue: collections.deque[tuple[int, UsageEvent]] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self.drained_seq = 0
        self.emitted_seq = 0
        self._drainer: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Drain the journals of dead processes (synchronously: before serving), then start the writer."""
        # With fsync "always" every invocation waits on a journal group, and the journal thread needs the GIL
        # for moments: at the default 5 ms switch interval the busy event loop would make each group wait
        # up to that long for it.
        if self.journal.fsync == "always":
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        recovered = self.recover_orphans()
        if recovered:
            log.info("metering: recovered %d events from journals of stopped processes", recovered)
        self._drainer = threading.Thread(target=self._run_drainer, name="outcrop-metering", daemon=True)
        self._drainer.start()

    def close(self) -> None:
        """Graceful shutdown: every event emitted so far reaches the database before this returns."""
        self._stopping = True
        self._wake.set()
        if self._drainer is not None:
            self._drainer.join()
        self.journal.close(drained_seq=self.drained_seq)

    # -- the record sink (event loop) ----------------------------------------------------------------
    async def admit(self, record: InvocationRecord) -> None:
        """Snapshot an application profile's tags onto the record; refuse it if a budget is spent."""
        profile_id, kind = profile_of(record.profile_arn)
        if kind != "APPLICATION" or profile_id is None or record.profile_arn is None:
            return
        tags = await self.tags.get(record.account, record.source_region, profile_id)
        record.tags = tags
        if tags:
            await check_budgets(self.spend, record.account, record.profile_arn, tags, int(time.time() * 1e6))

    async def emit(self, record: InvocationRecord) -> None:
        event = usage_event(record, self.prices)
        seq, durable = self.journal.append(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
        self.emitted_seq = seq
        if event["profile_type"] == "APPLICATION" and event["profile_arn"]:
            self.spend.add_pending(event["account"], event["profile_arn"], event["time_us"], event["cost_pusd"],
                                   event["input_tokens"] + event["output_tokens"])
        self._queue.append((seq, event))
        if len(self._queue) >= BATCH:
            self._wake.set()
        self.metrics.observe_later(event)
        if durable is not None:
            await durable

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event emitted so far is in the database (read-your-writes for reports)."""
        target = self.emitted_seq
        deadline = time.monotonic() + timeout
        while self.drained_seq < target:
            if time.monotonic() > deadline:
                return False
            self._wake.set()
            await asyncio.sleep(0.002)
        return True

    def invalidate_tags(self, account: str, region: str, profile_id: str) -> None:
        self.tags.invalidate(account, region, profile_id)

    # -- the writer thread ---------------------------------------------------------------------------
    def _run_drainer(self) -> None:
        next_scan = time.monotonic() + ORPHAN_SCAN_SECONDS
        while True:
            self._wake.wait(timeout=DRAIN_SECONDS)
            self._wake.clear()
            self.metrics.apply()
            # Drain what is queued now, then wait again: going round while events keep arriving would
            # commit a small batch every few milliseconds, each paying a transaction and its fsync.
            waiting = len(self._queue)
            while waiting > 0:
                batch = [self._queue.popleft() for _ in range(min(BATCH, waiting))]
                waiting -= len(batch)
                self._commit(batch)
            if self._stopping and not self._queue:
                return
            if time.monotonic() >= next_scan:
                next_scan = time.monotonic() + ORPHAN_SCAN_SECONDS
                self.recover_orphans()

    def _commit(self, batch: list[tuple[int, UsageEvent]]) -> None:
        events = [e for _, e in batch]
        attempt = 0
        while True:
            try:
                self.store.write_sync(lambda conn: ingest(conn, events))
                break
            except SQLAlchemyError:
                # The events are safe in the journal; keep them in order and try again.
                delay = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                log.exception("metering: writing %d events failed; retrying in %.1fs", len(events), delay)
                attempt += 1
                time.sleep(delay)
        for event in events:
            if event["profile_type"] == "APPLICATION" and event["profile_arn"]:
                self.spend.add_pending(event["account"], event["profile_arn"], event["time_us"],
                                       event["cost_pusd"], event["input_tokens"] + event["output_tokens"], sign=-1)
        self.drained_seq = batch[-1][0]
        self.journal.release(self.drained_seq)

    def recover_orphans(self) -> int:
        """Drain (and delete) the journals of processes that are gone; returns the events newly stored."""
        total = 0
        for orphan in claim_orphans(self.directory, self.journal.owner):
            total += self._drain_orphan(orphan)
        return total

    def _drain_orphan(self, orphan: Orphan) -> int:
        stored = 0
        batch: list[UsageEvent] = []
        for line in orphan.lines():
            try:
                batch.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                log.warning("metering: skipping an unreadable line in the journal of %s", orphan.owner)
                continue
            if len(batch) >= BATCH:
                stored += len(self.store.write_sync(lambda conn, b=batch: ingest(conn, b)))  # type: ignore[misc]
                batch = []
        if batch:
            stored += len(self.store.write_sync(lambda conn: ingest(conn, batch)))
        orphan.done()
        return stored
