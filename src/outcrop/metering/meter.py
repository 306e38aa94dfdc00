"""The metering pipeline: the runtime's record sink, the journal, and the ingester that stores it.

Guarantee: **every invocation whose answer the client received has its usage event durable.** The
runtime awaits ``emit`` before an answer's last byte goes out (a whole response, an error, or the end
frame of a stream), and ``emit`` returns once the event's line is in this process's journal
(``outcrop.metering.journal``): written, so that the death of the process loses nothing, and fsync'd
within ``metering_fsync_interval_ms``; or, with ``metering_fsync = "always"``, written and fsync'd, one
write and one fsync per group of invocations. The hot path never waits on the database, and does no
database work at all: the ingester (``outcrop.metering.ingester``), by default a child process of this
one, follows the journal and commits its events in batches, each one transaction that inserts the raw
events by request ID and adds each distinct rollup row's sums once (``outcrop.metering.rollups``). If the
ingester dies, this process starts another, which resumes where the last one had got to. If this process
dies, its ingester stores what is left and exits. If both die (``kill -9`` of the process group), the
next process to start on the same data directory (or any sibling's ingester) claims the journal and
drains it. Events already in the database are skipped, so none is lost and none counted twice. A
graceful shutdown stores everything and leaves no journal behind.

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
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from outcrop.control.catalog import Catalog
from outcrop.generations import SPEND, TAGS, Generations, Watch
from outcrop.metering.budgets import Spend, TagCache, check_budgets
from outcrop.metering.events import INDEX, event_values, profile_of
from outcrop.metering.ingester import BATCH, DATABASE_ENV, GROUP_SIGNALS, Ingester, recover_orphans
from outcrop.metering.journal import Journal, Progress
from outcrop.metering.metrics import MeteringMetrics
from outcrop.metering.prices import Prices
from outcrop.store.engine import Store

if TYPE_CHECKING:
    from outcrop.runtime.invoke import InvocationRecord

log = logging.getLogger(__name__)

SWITCH_INTERVAL = 0.0005
TICK_SECONDS = 0.25  # how often the event loop applies queued Prometheus observations and settles spend
INGEST_MODES = ("process", "thread")
FINISH_TIMEOUT = 60.0  # how long a graceful shutdown waits for the ingester to store the last events
RESPAWN_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)


_TYPE, _ARN, _ACCOUNT, _TIME, _COST, _IN, _OUT = (INDEX[f] for f in (
    "profile_type", "profile_arn", "account", "time_us", "cost_pusd", "input_tokens", "output_tokens"))


class Meter:
    """One per server process."""

    def __init__(
        self, store: Store, catalog: Catalog, directory: Path, registry: CollectorRegistry,
        prices: Prices | None = None, *, fsync: str = "interval", fsync_interval: float = 0.1,
        ingest: str = "process", generations: Generations | None = None,
    ) -> None:
        """``generations``: the counters shared by the workers of this server (``outcrop.generations``): tags
        changed through another worker, and spend against budgets stored by any worker's ingester."""
        if ingest not in INGEST_MODES:
            raise ValueError(f"ingest must be one of {', '.join(INGEST_MODES)}, not {ingest!r}")
        self.store = store
        self.prices = prices or Prices.load(catalog)
        self.generations = generations
        self.tags = TagCache(store, changes=None if generations is None else Watch(generations, TAGS))
        self.spend = Spend(store, settle=self.settle, not_stored=self._not_stored,
                           stored=None if generations is None else Watch(generations, SPEND))
        self.metrics = MeteringMetrics(registry, catalog.regions)
        self.directory = directory
        self.journal = Journal(directory, fsync=fsync, interval=fsync_interval)
        self.progress = Progress(directory / f"{self.journal.owner}.progress")
        # Application-profile events not yet stored: (seq, account, profile ARN, time, pUSD, tokens). Their
        # spend is pending (counted against budgets until the rollups hold it) only for profiles with a
        # budget: ``Spend.watched``.
        self._unsettled: collections.deque[tuple[int, str, str, int, int, int]] = collections.deque()
        self._woken_at = 0  # the journal's sequence number when the ingester was last woken for a backlog
        self._ticking = False
        restarts = Counter("outcrop_metering_ingester_restarts", "Ingest processes that died and were started again",
                           registry=registry)
        self._ingester: _IngestProcess | _IngestThread = (
            _IngestProcess(store.url, directory, self.journal.owner, self.journal.lock_fd, restarts.inc,
                           None if generations is None else generations.path)
            if ingest == "process"
            else _IngestThread(Ingester(store, directory, self.journal.owner, budgeted=self._budgeted))
        )
        Gauge("outcrop_metering_backlog_events", "Usage events of this process journaled but not yet stored in the "
              "database", registry=registry).set_function(self._backlog)

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Drain the journals of dead processes (synchronously: before serving), then start the ingester."""
        # With fsync "always" every invocation waits on a journal group, and the journal thread needs the GIL
        # for moments: at the default 5 ms switch interval the busy event loop would make each group wait
        # up to that long for it.
        if self.journal.fsync == "always":
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        recovered = recover_orphans(self.store, self.directory, self.journal.owner, budgeted=self._budgeted)
        if recovered:
            log.info("metering: recovered %d events from journals of stopped processes", recovered)
        self._ingester.start()

    def close(self) -> None:
        """Graceful shutdown: every event emitted so far reaches the database before this returns (unless
        the database fails for longer than the ingester waits: then the journal keeps them for the next
        start)."""
        self.journal.close(keep_lock=True)
        if not self._ingester.finish():
            # The ingester process was gone: finish here, with this process's store.
            Ingester(self.store, self.directory, self.journal.owner, budgeted=self._budgeted).finish()
        self.journal.unlock()
        self.metrics.apply()
        self.progress.close()

    def _budgeted(self) -> None:
        """Spend against a budget was stored here (thread ingest, recovery): every worker reads it again."""
        if self.generations is not None:
            self.generations.bump(SPEND)

    # -- the record sink (event loop) ----------------------------------------------------------------
    async def admit(self, record: InvocationRecord) -> None:
        """Snapshot an application profile's tags onto the record; refuse it if a budget is spent."""
        profile_id, kind = profile_of(record.profile_arn)
        if kind != "APPLICATION" or profile_id is None or record.profile_arn is None:
            return
        tags = self.tags.cached(record.account, record.source_region, profile_id)
        if tags is None:
            tags = await self.tags.get(record.account, record.source_region, profile_id)
        record.tags = tags
        if tags:
            await check_budgets(self.spend, record.account, record.profile_arn, tags, int(time.time() * 1e6))

    async def emit(self, record: InvocationRecord) -> None:
        event = event_values(record, self.prices)
        seq, durable = self.journal.append(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
        if event[_TYPE] == "APPLICATION" and event[_ARN]:
            spent = (event[_ACCOUNT], event[_ARN], event[_TIME], event[_COST], event[_IN] + event[_OUT])
            self._unsettled.append((seq, *spent))
            if (spent[0], spent[1]) in self.spend.watched:
                self.spend.add_pending(*spent)
        if seq - self._woken_at >= BATCH:
            self._woken_at = seq
            self._ingester.wake()
        self.metrics.observe_later(event)
        if not self._ticking:
            self._ticking = True
            asyncio.get_running_loop().call_later(TICK_SECONDS, self._tick, seq)
        if durable is not None:
            await durable

    def _tick(self, seq_then: int) -> None:
        """On the event loop, every ``TICK_SECONDS`` while events come: Prometheus and spend catch up."""
        self.metrics.apply()
        self.settle()
        if self.journal.written != seq_then and not self.journal.closed:
            asyncio.get_running_loop().call_later(TICK_SECONDS, self._tick, self.journal.written)
        else:
            self._ticking = False

    def _backlog(self) -> int:
        return 0 if self.journal.closed else max(0, self.journal.written - self.progress.seq)

    def settle(self) -> None:
        """Take the events the ingester has stored out of the pending spend (they are in the rollups now)."""
        if not self._unsettled:
            return
        stored = self.progress.seq
        unsettled = self._unsettled
        watched = self.spend.watched
        while unsettled and unsettled[0][0] <= stored:
            _, account, arn, time_us, pusd, tokens = unsettled.popleft()
            if (account, arn) in watched:
                self.spend.add_pending(account, arn, time_us, pusd, tokens, sign=-1)

    def _not_stored(self, account: str, profile_arn: str) -> list[tuple[int, int, int]]:
        """(time, pUSD, tokens) of the profile's events that the ingester has not stored yet (``Spend``
        settles before it asks)."""
        return [(t, pusd, tokens) for _, a, arn, t, pusd, tokens in self._unsettled if a == account and arn == profile_arn]

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event emitted so far is in the database (read-your-writes for reports)."""
        target = self.journal.written
        deadline = time.monotonic() + timeout
        if self.progress.seq < target:
            self._ingester.wake()
        while self.progress.seq < target:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.002)
        self.settle()
        return True

    def invalidate_tags(self, account: str, region: str, profile_id: str) -> None:
        self.tags.invalidate(account, region, profile_id)


class _IngestThread:
    """``metering_ingest = "thread"``: the ingester on a thread of this process."""

    def __init__(self, ingester: Ingester) -> None:
        self._signals = ingester.signals
        self._thread = threading.Thread(target=ingester.run, name="outcrop-metering", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._signals.wake.set()

    def finish(self) -> bool:
        self._signals.finish()
        self._thread.join()
        return True  # finished, or the database failed for long: either way no one else is to try now


class _IngestProcess:
    """``metering_ingest = "process"``: the ingester as a child process, started again if it dies."""

    def __init__(self, database_url: str, directory: Path, owner: str, lock_fd: int,
                 on_restart: Callable[[], None] = lambda: None, generations: Path | None = None) -> None:
        self._on_restart = on_restart
        self._command = [sys.executable, "-m", "outcrop.metering.ingester", str(directory), owner, str(lock_fd)]
        if generations is not None:
            self._command.append(str(generations))
        self._env = {**os.environ, DATABASE_ENV: database_url}
        self._lock_fd = lock_fd
        self._mutex = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pipe = -1
        self._finishing = False
        self._watcher = threading.Thread(target=self._watch, name="outcrop-ingest-watch", daemon=True)

    def start(self) -> None:
        with self._mutex:
            self._spawn()
        self._watcher.start()

    def _spawn(self) -> None:
        read_end, write_end = os.pipe()
        # The child starts with SIGINT and SIGTERM blocked (a signal mask survives fork and exec), so that a
        # stop of the process group while it is still importing cannot kill it before it ignores them.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, GROUP_SIGNALS)
        try:
            self._proc = subprocess.Popen(self._command, stdin=read_end, pass_fds=(self._lock_fd,), env=self._env)
        except BaseException:
            os.close(write_end)
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(read_end)
        os.set_blocking(write_end, False)
        self._pipe = write_end

    def _watch(self) -> None:
        """Wait on the child; if it dies while this process serves, start another (it resumes the journal)."""
        failures = 0
        while True:
            proc = self._proc
            assert proc is not None
            started = time.monotonic()
            code = proc.wait()
            with self._mutex:
                if self._finishing:
                    return
            failures = 0 if time.monotonic() - started > 60 else failures + 1
            delay = RESPAWN_SECONDS[min(failures, len(RESPAWN_SECONDS) - 1)]
            log.error("metering: the ingest process exited with %s; starting another in %.1fs", code, delay)
            time.sleep(delay)
            with self._mutex:
                if self._finishing:
                    return
                # No number of a closed descriptor is left in ``_pipe``: the process may open another file
                # under it at any time, which ``wake`` would write into and ``finish`` close.
                old, self._pipe = self._pipe, -1
                if old >= 0:
                    os.close(old)
                try:
                    self._spawn()
                except OSError:  # EMFILE, ENOMEM …: the dead child's ``wait`` returns at once, and it is tried again
                    log.exception("metering: starting the ingest process failed")
                    continue
            self._on_restart()

    def wake(self) -> None:
        # Not while the pipe is being replaced (the new child reads the journal from its progress anyway).
        if not self._mutex.acquire(blocking=False):
            return
        try:
            if self._pipe >= 0:
                with contextlib.suppress(OSError):  # already woken (the pipe is full)
                    os.write(self._pipe, b"w")
        finally:
            self._mutex.release()

    def finish(self) -> bool:
        """Tell the ingester the journal is closed (end of file on its stdin) and wait for it to store the
        rest. False if it was not running: the caller stores the rest itself."""
        with self._mutex:
            self._finishing = True
            proc = self._proc
            if self._pipe >= 0:
                os.close(self._pipe)
                self._pipe = -1
        if proc is None or proc.poll() is not None:
            return False
        try:
            code = proc.wait(FINISH_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("metering: the ingester is still storing events after %.0fs; it finishes on its own",
                        FINISH_TIMEOUT)
            return True
        if code != 0:
            log.warning("metering: the ingester exited with %s and left events in the journal; the next start "
                        "stores them", code)
        return True
