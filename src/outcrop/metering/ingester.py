"""The ingester: follows one server process's journal and stores its events in the database.

By default it runs as a process of its own (``metering_ingest = "process"``), a child of the server
process whose journal it follows; ``"thread"`` runs the same loop on a thread of the server process.
Storing an event costs ~25 µs of Python (parse, insert, rollups); on a thread that time is taken from
the event loop, since both need the GIL, and in bursts that held every request waiting. As a process it
shares nothing with the event loop but a core, which the kernel divides far more finely.

How the two processes work together, without a socket or a lock between them:

- The journal (``outcrop.metering.journal``) is the only channel for events: the ingester reads the
  segments as the server writes them (``Tail``), so nothing is copied twice and an event the server
  wrote is an event the ingester will read, whichever of the two dies.
- The ingester publishes how far it has stored (``Progress``, a shared mapping); the server reads it to
  settle its pending spend and to answer ``flush`` (read-your-writes for reports). The ingester deletes
  the segments it has stored.
- Its stdin is a pipe from the server: a byte wakes it at once (``flush``, a large backlog); end of
  file means the server closed its journal or died. Either way the ingester stores what is left,
  deletes the journal and exits; if the database is failing then, it tries for ``FINAL_PATIENCE``
  seconds and leaves the rest in the journal for the next process to start.
- It inherits the descriptor of the journal's owner lock, so the journal counts as alive while either
  process lives, and no other process claims it as an orphan in the meantime. When both are gone
  (``kill -9`` of the whole group), the next process to start drains it as before.
- Killed alone, it is started again by the server, and resumes from the published progress; events
  stored but not yet published are skipped by the database (it ingests by request ID).
- Once it has stored events of a profile with a budget, it bumps ``generations.SPEND`` in the server's
  shared counters, so that every worker reads that profile's spend again (``outcrop.metering.budgets``).
- It ignores SIGINT and SIGTERM, which reach the whole process group on Ctrl-C or a stop: the server
  tells it when to finish, after its last event. (The server starts it with both blocked, so that one
  arriving while it is still starting up is not fatal either.)

Run as ``python -m outcrop.metering.ingester DIRECTORY OWNER LOCK_FD [GENERATIONS]`` with the database URL
in ``OUTCROP_INGEST_DATABASE_URL`` (not in the arguments, where ``ps`` shows it); ``GENERATIONS`` is the
server's file of shared counters (``outcrop.generations``).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from sqlalchemy.exc import SQLAlchemyError

from outcrop.generations import SPEND, Generations
from outcrop.metering.budgets import has_budget
from outcrop.metering.events import FIELDS, UsageEvent
from outcrop.metering.journal import Orphan, Progress, Tail, claim_orphans
from outcrop.metering.rollups import ingest
from outcrop.store.engine import Store

log = logging.getLogger(__name__)

BATCH = 5000
DRAIN_SECONDS = 0.25  # the pace: large batches, each a single transaction
ORPHAN_SCAN_SECONDS = 5.0
RETRY_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)
FINAL_PATIENCE = 30.0  # how long a final drain keeps retrying a failing database before leaving the rest
DATABASE_ENV = "OUTCROP_INGEST_DATABASE_URL"
# The ingester yields the CPU to its server: under contention requests come first, and the ingest catches
# up as soon as they leave room (the journal holds what is not stored yet, durably). At the same priority,
# each batch it stored competed with the event loop for the same two cores: in bench/runtime the added p50
# and p99 at c=16 were 0.3 and 1 ms higher.
NICENESS = 10
GROUP_SIGNALS = {signal.SIGINT, signal.SIGTERM}  # sent to the whole process group; the server says when to stop


class GaveUp(Exception):
    """The database refused a batch for longer than the caller would wait; the journal keeps it."""

    stored = 0  # events stored before the batch that was given up on


def parse(lines: list[bytes], owner: str) -> list[UsageEvent]:
    """The events of journal lines: arrays of values in ``FIELDS`` order, or (journaled by an earlier
    version) objects."""
    events = []
    for line in lines:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            log.warning("metering: skipping an unreadable line in the journal of %s", owner)
            continue
        if not isinstance(event, list | dict):
            log.warning("metering: skipping a line that is no event in the journal of %s", owner)
            continue
        if isinstance(event, list):
            if len(event) != len(FIELDS):
                log.warning("metering: skipping a line of %d values (not %d) in the journal of %s", len(event),
                            len(FIELDS), owner)
                continue
            event = dict(zip(FIELDS, event, strict=True))
        events.append(event)
    return events


class Signals:
    """What the writer tells its ingester: ``wake`` (look now) and ``done`` (the journal is closed, or its
    writer dead: store the rest and stop)."""

    def __init__(self) -> None:
        self.wake = threading.Event()
        self.done = threading.Event()

    def wait(self, timeout: float) -> bool:
        """Until woken or ``timeout`` seconds; True once the writer is done."""
        self.wake.wait(timeout)
        self.wake.clear()
        return self.done.is_set()

    def finish(self) -> None:
        self.done.set()
        self.wake.set()

    def follow(self, fd: int) -> None:
        """The child's signals come down a pipe (``fd``): a byte wakes it; end of file means done."""

        def read() -> None:
            try:
                while os.read(fd, 4096):
                    self.wake.set()
            except OSError:
                pass
            self.finish()

        threading.Thread(target=read, name="outcrop-ingest-pipe", daemon=True).start()


def store_events(store: Store, events: list[UsageEvent], deadline: float | None = None,
                 done: threading.Event | None = None) -> int:
    """Ingest one batch, retrying while the database fails (the events are safe in the journal meanwhile);
    returns how many were new. Past ``deadline`` (monotonic) a failure raises ``GaveUp``; once ``done`` is
    set the deadline is at most ``FINAL_PATIENCE`` away, so that a database down for good cannot keep an
    ingester alive after its server has stopped."""
    attempt = 0
    while True:
        try:
            return len(store.write_sync(lambda conn: ingest(conn, events)))
        except SQLAlchemyError:
            delay = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
            if done is not None and done.is_set():
                patience = time.monotonic() + FINAL_PATIENCE
                deadline = patience if deadline is None else min(deadline, patience)
            if deadline is not None and time.monotonic() + delay > deadline:
                log.exception("metering: storing %d events failed; leaving them in the journal", len(events))
                raise GaveUp from None
            log.exception("metering: storing %d events failed; retrying in %.1fs", len(events), delay)
            attempt += 1
            time.sleep(delay)


Announce = Callable[[], None]  # called once a batch holding spend against a budget is stored


def store_tail(store: Store, tail: Tail, *, final: bool = False, deadline: float | None = None,
               done: threading.Event | None = None, budgeted: Announce | None = None) -> int:
    """Store every complete line of ``tail`` not stored yet, a batch at a time, publishing the progress
    after each; returns how many events were new."""
    stored = 0
    try:
        while True:
            lines = tail.read(BATCH, final=final)
            announce = False
            if lines:
                events = parse(lines, tail.owner)
                stored += store_events(store, events, deadline, done)
                announce = budgeted is not None and any(has_budget(e.get("tags")) for e in events)
            tail.commit()
            if announce and budgeted is not None:  # after the progress: the worker that wrote them settles
                budgeted()  # them as it reads its spend again
            if len(lines) < BATCH:
                return stored
    except GaveUp as e:
        e.stored = stored
        raise


def drain_orphan(store: Store, orphan: Orphan, deadline: float | None = None, budgeted: Announce | None = None) -> int:
    """Store (then delete) a dead process's journal; returns the events newly stored."""
    try:
        stored = store_tail(store, orphan.tail, final=True, deadline=deadline, budgeted=budgeted)
    except GaveUp as e:
        orphan.tail.close()
        os.close(orphan.lock_fd)  # unlocked: someone else may try later
        return e.stored
    orphan.done()
    return stored


def recover_orphans(store: Store, directory: Path, own_owner: str, deadline: float | None = None,
                    budgeted: Announce | None = None) -> int:
    return sum(drain_orphan(store, orphan, deadline, budgeted) for orphan in claim_orphans(directory, own_owner))


class Ingester:
    """Stores one live journal's events as they are written."""

    def __init__(self, store: Store, directory: Path, owner: str, signals: Signals | None = None,
                 budgeted: Announce | None = None) -> None:
        """``budgeted``: called after storing events of a profile with a budget (it bumps ``generations.SPEND``)."""
        self.store = store
        self.directory = directory
        self.owner = owner
        self.signals = signals or Signals()
        self.budgeted = budgeted
        self.tail = Tail(directory, owner, Progress(directory / f"{owner}.progress"))

    def step(self, *, final: bool = False, deadline: float | None = None) -> int:
        """Store every complete line written so far; returns how many events were new."""
        return store_tail(self.store, self.tail, final=final, deadline=deadline, done=self.signals.done,
                          budgeted=self.budgeted)

    def finish(self) -> bool:
        """The writer is done (closed, or dead): store the rest and delete the journal. False if the database
        failed for ``FINAL_PATIENCE``: the journal is left for the next process to recover."""
        try:
            self.step(final=True, deadline=time.monotonic() + FINAL_PATIENCE)
        except GaveUp:
            self.tail.close()
            return False
        self.tail.remove()
        return True

    def run(self) -> bool:
        """Store what arrives until the writer is done (``signals``), then ``finish``; its result."""
        next_scan = time.monotonic() + ORPHAN_SCAN_SECONDS
        while not self.signals.wait(DRAIN_SECONDS):
            try:
                self.step()
            except GaveUp:  # the writer finished while the database was failing: leave the rest
                self.tail.close()
                return False
            if time.monotonic() >= next_scan:
                next_scan = time.monotonic() + ORPHAN_SCAN_SECONDS
                recovered = recover_orphans(self.store, self.directory, self.owner, budgeted=self.budgeted)
                if recovered:
                    log.info("metering: recovered %d events from journals of stopped processes", recovered)
        return self.finish()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (3, 4) or DATABASE_ENV not in os.environ:
        print(f"usage: {DATABASE_ENV}=URL python -m outcrop.metering.ingester DIRECTORY OWNER LOCK_FD [GENERATIONS]",
              file=sys.stderr)
        return 2
    directory, owner, lock_fd = Path(args[0]), args[1], int(args[2])
    generations = Generations(Path(args[3])) if len(args) == 4 else None
    os.nice(NICENESS)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s outcrop-ingest[%(process)d] %(levelname)s %(message)s")
    for signum in GROUP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, GROUP_SIGNALS)  # blocked by the server from before exec
    store = Store(os.environ[DATABASE_ENV], read_threads=1)
    signals = Signals()
    signals.follow(0)  # stdin: the pipe from the server
    budgeted = None if generations is None else functools.partial(generations.bump, SPEND)
    try:
        finished = Ingester(store, directory, owner, signals, budgeted).run()
    finally:
        store.close()
        os.close(lock_fd)
        if generations is not None:
            generations.close()
    return 0 if finished else 1


if __name__ == "__main__":
    sys.exit(main())
