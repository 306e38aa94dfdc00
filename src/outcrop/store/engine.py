"""Connections to the database, migrations, and the durable write path.

Writes go through one ``GroupCommitWriter`` per process: callers submit a function of a connection, the
writer runs a batch of them, each inside its own SAVEPOINT, and commits the batch once. A caller's
future resolves only after that COMMIT has returned, which on SQLite (WAL, ``synchronous=FULL``) and on
PostgreSQL (``synchronous_commit=on``) means the change is on disk: an acknowledged write survives
``kill -9``. One fsync serves the whole batch, so durable writes scale with load instead of with the
disk's fsync rate.

Reads on SQLite run inline on the calling thread (a point query costs microseconds and WAL readers never
wait for the writer); on PostgreSQL they run in a small thread pool so that the event loop never waits on
the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import NullPool, QueuePool
from sqlalchemy.sql import Executable

from outcrop.errors import ServiceError
from outcrop.futures import settle

log = logging.getLogger(__name__)
T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 10_000


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def normalize_url(url: str) -> str:
    """Accept the URLs people type (``postgresql://``) and pick the driver outcrop ships (psycopg 3)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _sqlite_engine(url: str, *, immediate: bool, pool_size: int) -> Engine:
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:" and not path.startswith("file:"):
        _create_private(Path(path))
    engine = create_engine(
        url,
        poolclass=QueuePool if pool_size else NullPool,
        pool_size=max(pool_size, 1),
        max_overflow=4,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the sqlite3 module so SAVEPOINT and BEGIN IMMEDIATE work as written.
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    if immediate:

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # A writer takes the lock up front, so a batch never fails half-way on a lock upgrade.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    # Readers run each statement in SQLite's own implicit transaction: one round trip, a consistent
    # snapshot per statement, and never a lock held between statements.

    return engine


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only (it holds secrets), and its directory 0700.

    SQLite gives its -wal and -shm files the permissions of the database file.
    """
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


class Statement:
    """A Core statement with bind parameters, compiled once per dialect and run on the driver connection.

    The SQL and values are exactly those SQLAlchemy would send, without its per-execution bookkeeping,
    which was most of the cost of the hottest paths (GetInferenceProfile, each CreateInferenceProfile in
    a write batch). It runs inside whatever transaction the SQLAlchemy connection holds. Constraint
    violations surface as SQLAlchemy's ``IntegrityError``, as they would through SQLAlchemy.
    """

    def __init__(self, statement: Executable, columns: list[str] | None = None) -> None:
        """``columns``: for an INSERT, the columns every execution supplies, in any order."""
        self.statement = statement
        self._columns = columns
        selected = getattr(statement, "selected_columns", None)
        self._keys = [c.key for c in selected] if selected is not None else []
        self._compiled_for: dict[str, tuple[str, tuple[str, ...] | None, Any, bool]] = {}

    def _compiled(self, conn: Connection) -> tuple[str, tuple[str, ...] | None, Any, bool]:
        compiled = self._compiled_for.get(conn.dialect.name)
        if compiled is None:
            c = self.statement.compile(dialect=conn.dialect, column_keys=self._columns)  # type: ignore[attr-defined]
            positions = tuple(c.positiontup) if c.positiontup else None
            # Values SQLAlchemy supplies itself (SQLite's OFFSET of a LIMIT, literals) need construct_params.
            own = {k for k, b in c.binds.items() if b.value is not None and not b.required}
            compiled = (str(c), positions, c, bool(own))
            self._compiled_for[conn.dialect.name] = compiled
        return compiled

    def _args(self, conn: Connection, params: dict[str, Any]) -> tuple[str, Any]:
        sql, positions, c, needs_defaults = self._compiled(conn)
        values = c.construct_params(params) if needs_defaults else params
        return sql, values if positions is None else [values[p] for p in positions]

    def _run(self, conn: Connection, params: dict[str, Any]) -> Any:
        sql, args = self._args(conn, params)
        try:
            return _driver(conn).execute(sql, args)
        except conn.dialect.dbapi.IntegrityError as e:  # type: ignore[union-attr]
            raise IntegrityError(sql, args, e) from e

    def all(self, conn: Connection, params: dict[str, Any]) -> list[dict[str, Any]]:
        keys = self._keys
        return [dict(zip(keys, row, strict=True)) for row in self._run(conn, params).fetchall()]

    def first(self, conn: Connection, params: dict[str, Any]) -> dict[str, Any] | None:
        rows = self.all(conn, params)
        return rows[0] if rows else None

    def execute(self, conn: Connection, params: dict[str, Any]) -> int:
        """Run a DML statement; the number of rows it changed."""
        return int(self._run(conn, params).rowcount)

    def executemany(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        sql = self._compiled(conn)[0]
        args = [self._args(conn, row)[1] for row in rows]
        driver = _driver(conn)
        try:
            if hasattr(driver, "executemany"):
                driver.executemany(sql, args)
            else:
                driver.cursor().executemany(sql, args)
        except conn.dialect.dbapi.IntegrityError as e:  # type: ignore[union-attr]
            raise IntegrityError(sql, args, e) from e


def _driver(conn: Connection) -> Any:
    return conn.connection.driver_connection


_SAVEPOINTS = itertools.count()


@contextlib.contextmanager
def savepoint(conn: Connection) -> Iterator[None]:
    """A SAVEPOINT around the block: rolled back (and the error re-raised) if the block raises.

    Issued on the driver connection, inside the SQLAlchemy connection's transaction: a round trip each
    way instead of SQLAlchemy's nested-transaction bookkeeping.
    """
    name = f"sp{next(_SAVEPOINTS)}"
    driver = _driver(conn)
    driver.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        driver.execute(f"ROLLBACK TO SAVEPOINT {name}")
        driver.execute(f"RELEASE SAVEPOINT {name}")
        raise
    driver.execute(f"RELEASE SAVEPOINT {name}")


class Recheck(Exception):
    """Raised by a write function to have everything it did rolled back and ``fn`` run in its place.

    The way out of a failed statement: PostgreSQL accepts nothing more in a transaction after one until it
    rolls back to a savepoint, and the writer already holds one per function. ``fn``'s result (or error)
    is the caller's.
    """

    def __init__(self, fn: Callable[[Connection], Any]) -> None:
        super().__init__()
        self.fn = fn


class _Job:
    """One submitted write: resolved through an asyncio future (``loop`` set) or a concurrent one."""

    __slots__ = ("fn", "future", "loop", "ok", "value")

    def __init__(self, fn: Callable[[Connection], Any], loop: asyncio.AbstractEventLoop | None) -> None:
        self.fn = fn
        self.loop = loop
        self.future: asyncio.Future[Any] | Future[Any] = loop.create_future() if loop else Future()
        self.ok = False
        self.value: Any = None


def _settle(jobs: list[_Job]) -> None:
    for job in jobs:
        if job.ok:
            settle(job.future, job.value, None)
        else:
            settle(job.future, None, job.value)


def _run_job(conn: Connection, job: _Job) -> None:
    """One write function in its own savepoint; a ``Recheck`` rolls it back and runs the recheck instead."""
    try:
        with savepoint(conn):
            job.value = job.fn(conn)
            job.ok = True
    except Recheck as recheck:
        try:
            with savepoint(conn):
                job.value = recheck.fn(conn)
                job.ok = True
        except BaseException as e:
            job.ok, job.value = False, e
    except BaseException as e:
        job.ok, job.value = False, e


class LoopWriter:
    """SQLite's write path for the event loop: statements run on the loop, BEGIN and COMMIT on a thread.

    A request's writes on SQLite are a few statements of microseconds each; what takes time is taking the
    write lock (``BEGIN IMMEDIATE``, which may wait for another process) and the COMMIT's fsync. Running
    the statements on a writer thread cost more than running them: every statement gave the GIL up and
    took it back from the busy event loop. Here the loop runs them itself, inside a transaction that a
    helper thread opened, and hands the transaction back to the thread to commit. Jobs that arrive while
    a transaction is being opened or committed wait for the next one, so each COMMIT (one fsync) serves
    every write that came in meanwhile, as with ``GroupCommitWriter``; a job's future resolves only once
    its COMMIT has returned.

    States: idle → opening (thread: BEGIN IMMEDIATE) → open (loop: run the pending jobs) → committing
    (thread: COMMIT) → opening again if jobs are waiting, else idle. Only one of the loop and the thread
    uses the connection at any moment.
    """

    def __init__(self, engine: Engine, name: str = "outcrop-sqlite-commit") -> None:
        self._engine = engine
        self._conn: Connection | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._pending: list[_Job] = []
        self._busy = False  # a transaction is being opened, run or committed
        self._closed = False

    async def write(self, fn: Callable[[Connection], T]) -> T:
        if self._closed:
            raise RuntimeError("the writer is closed")
        loop = asyncio.get_running_loop()
        job = _Job(fn, loop)
        self._pending.append(job)
        if not self._busy:
            self._busy = True
            self._cycle(loop)
        return await job.future  # type: ignore[no-any-return]

    def _cycle(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open a transaction on the thread; then run what is pending and commit it."""
        opening = loop.run_in_executor(self._pool, self._begin)
        opening.add_done_callback(lambda f: self._opened(loop, f))

    def _begin(self) -> Any:
        if self._conn is None:
            self._conn = self._engine.connect()
        return self._conn.begin()  # BEGIN IMMEDIATE (the engine's "begin" hook)

    def _opened(self, loop: asyncio.AbstractEventLoop, opening: asyncio.Future[Any]) -> None:
        batch, self._pending = self._pending, []
        error = opening.exception()
        if error is None and (self._closed or self._conn is None):
            error = RuntimeError("the writer is closed")
        if error is not None:
            log.error("could not open a write transaction: %s", error)
            self._drop_connection()
            self._finish(loop, batch, error)
            return
        transaction = opening.result()
        assert self._conn is not None
        for job in batch:
            _run_job(self._conn, job)
        committing = loop.run_in_executor(self._pool, transaction.commit)
        committing.add_done_callback(lambda f: self._committed(loop, batch, f))

    def _committed(self, loop: asyncio.AbstractEventLoop, batch: list[_Job], committing: asyncio.Future[Any]) -> None:
        error = committing.exception()
        if error is not None:
            log.error("write batch of %d failed to commit: %s", len(batch), error)
            self._drop_connection()
        self._finish(loop, batch, error)

    def _finish(self, loop: asyncio.AbstractEventLoop, batch: list[_Job], error: BaseException | None) -> None:
        if error is not None:
            for job in batch:
                job.ok, job.value = False, error
        _settle(batch)
        if self._pending and not self._closed:
            self._cycle(loop)
        else:
            self._busy = False
            for job in self._pending:  # closed meanwhile
                job.ok, job.value = False, RuntimeError("the writer is closed")
            _settle(self._pending)
            self._pending = []

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.invalidate()

    def close(self) -> None:
        """Stop taking jobs; wait for a BEGIN or COMMIT in progress, then roll back whatever transaction is still
        open (its jobs were never acknowledged). Safe to call twice."""
        self._closed = True
        self._pool.shutdown(wait=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class GroupCommitWriter:
    """Runs submitted write functions in batches, one transaction and one COMMIT per batch.

    Each function runs in its own SAVEPOINT, so one failing (a duplicate name, say) leaves the others of
    its batch untouched; one that raises ``Recheck`` is rolled back and the recheck runs instead. Results
    reach their event loop once per batch, not once per job.
    """

    def __init__(self, engine: Engine, *, max_batch: int = 256, name: str = "outcrop-writer") -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._closed = False
        self._thread.start()

    def _put(self, job: _Job) -> None:
        if self._closed:
            raise RuntimeError("the writer is closed")
        self._queue.put(job)

    def submit(self, fn: Callable[[Connection], T]) -> Future[T]:
        job = _Job(fn, None)
        self._put(job)
        return job.future  # type: ignore[return-value]

    async def write(self, fn: Callable[[Connection], T]) -> T:
        job = _Job(fn, asyncio.get_running_loop())
        self._put(job)
        return await job.future  # type: ignore[no-any-return]

    def close(self) -> None:
        """Finish every job already submitted, then stop."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Job]) -> None:
        try:
            with self._engine.connect() as conn, conn.begin():
                for job in batch:
                    _run_job(conn, job)
                # Leaving ``conn.begin()`` committed the batch: only now is anything acknowledged.
        except Exception as e:
            log.exception("write batch of %d failed to commit", len(batch))
            for job in batch:
                job.ok, job.value = False, e
        by_loop: dict[asyncio.AbstractEventLoop | None, list[_Job]] = {}
        for job in batch:
            by_loop.setdefault(job.loop, []).append(job)
        for loop, jobs in by_loop.items():
            if loop is None:
                _settle(jobs)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(_settle, jobs)


class _ReadThreads:
    """Threads that run reads for the event loop (PostgreSQL): a queue in, one callback per answer out.

    ``run_in_executor`` did the same through a ``concurrent.futures.Future`` (a Condition, an RLock) chained
    to an asyncio future: a fifth of a GetInferenceProfile's time on the event loop's thread.
    """

    def __init__(self, n: int, run: Callable[[Callable[[Connection], Any]], Any]) -> None:
        self._run = run
        self._queue: queue.SimpleQueue[tuple[Callable[[Connection], Any], asyncio.Future[Any], asyncio.AbstractEventLoop] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._serve, name=f"outcrop-read_{i}", daemon=True) for i in range(n)]
        for thread in self._threads:
            thread.start()

    async def run(self, fn: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, future, loop))
        return await future

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, future, loop = item
            try:
                value, error = self._run(fn), None
            except BaseException as e:
                value, error = None, e
            if not loop.is_closed():
                loop.call_soon_threadsafe(settle, future, value, error)

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()


class Store:
    """The database behind one server process: a read path and a group-commit write path."""

    def __init__(self, url: str, *, read_threads: int = 8) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = _is_sqlite(self.url)
        self._inline_conn: Connection | None = None
        if self.is_sqlite:
            self.read_engine = _sqlite_engine(self.url, immediate=False, pool_size=read_threads)
            self.write_engine = _sqlite_engine(self.url, immediate=True, pool_size=2)  # LoopWriter + GroupCommitWriter
            self._read_pool: _ReadThreads | None = None
        else:
            # Reads run in autocommit (no BEGIN/ROLLBACK round trips) and without a ping per checkout; a
            # connection found dead is retried once (``read_sync``). The writer pings once per batch.
            self.read_engine = create_engine(
                self.url, pool_size=read_threads, max_overflow=4, isolation_level="AUTOCOMMIT", pool_recycle=3600
            )
            self.write_engine = create_engine(self.url, pool_size=2, max_overflow=0, pool_pre_ping=True)
            self._read_pool = _ReadThreads(read_threads, self._read_on_thread)
            self._thread_conns = threading.local()
        self._held: list[Connection] = []  # the read threads' connections, closed with the store
        self._held_lock = threading.Lock()
        self.writer = GroupCommitWriter(self.write_engine)
        # SQLite: requests' writes run on the event loop (LoopWriter); write_sync callers (threads, bulk
        # metering ingest) keep the writer thread. The database's write lock orders the two.
        self.loop_writer = LoopWriter(self.write_engine) if self.is_sqlite else None

    # -- reads ---------------------------------------------------------------------------------------
    def read_sync(self, fn: Callable[[Connection], T]) -> T:
        for attempt in (1, 2):
            try:
                with self.read_engine.connect() as conn:
                    try:
                        return fn(conn)
                    finally:
                        conn.rollback()
            except DBAPIError as e:
                if not e.connection_invalidated or attempt == 2:
                    raise
                log.warning("a pooled database connection was dead; retrying the read on a new one")
        raise AssertionError("unreachable")

    async def read(self, fn: Callable[[Connection], T]) -> T:
        if self._read_pool is None:
            return self._read_inline(fn)
        return await self._read_pool.run(fn)

    def _read_on_thread(self, fn: Callable[[Connection], T]) -> T:
        """A read on one of the pool's threads, each keeping its own autocommit connection: no pool
        checkout and return per read. A connection found dead is replaced and the read retried once."""
        for attempt in (1, 2):
            conn = getattr(self._thread_conns, "conn", None)
            if conn is None:
                conn = self._thread_conns.conn = self.read_engine.connect()
                with self._held_lock:
                    self._held.append(conn)
            try:
                return fn(conn)
            except DBAPIError as e:
                self._thread_conns.conn = None
                conn.invalidate() if e.connection_invalidated else conn.close()
                if not e.connection_invalidated or attempt == 2:
                    raise
                log.warning("a database connection was dead; retrying the read on a new one")
        raise AssertionError("unreachable")

    def _read_inline(self, fn: Callable[[Connection], T]) -> T:
        # One long-lived connection on the event-loop thread; each read is its own short transaction.
        if self._inline_conn is None:
            self._inline_conn = self.read_engine.connect()
        conn = self._inline_conn
        try:
            return fn(conn)
        except ServiceError:
            raise
        except Exception:
            self._inline_conn = None
            conn.close()
            raise
        finally:
            if self._inline_conn is not None:
                conn.rollback()

    # -- writes --------------------------------------------------------------------------------------
    async def write(self, fn: Callable[[Connection], T]) -> T:
        if self.loop_writer is not None:
            return await self.loop_writer.write(fn)
        return await self.writer.write(fn)

    def write_sync(self, fn: Callable[[Connection], T]) -> T:
        return self.writer.submit(fn).result()

    # -- lifecycle -----------------------------------------------------------------------------------
    def migrate(self) -> None:
        migrate(self.write_engine)

    def close_loop_writes(self) -> None:
        """Stop the event loop's write path (SQLite); writes from threads go on until ``close``."""
        if self.loop_writer is not None:
            self.loop_writer.close()

    def close(self) -> None:
        self.close_loop_writes()
        self.writer.close()
        if self._inline_conn is not None:
            self._inline_conn.close()
            self._inline_conn = None
        if self._read_pool is not None:
            self._read_pool.close()
        with self._held_lock:
            for conn in self._held:
                conn.close()
            self._held.clear()
        self.read_engine.dispose()
        self.write_engine.dispose()


MIGRATION_LOCK_ID = 0x6F7574637270  # "outcrp": a PostgreSQL advisory lock held while migrating


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to the newest Alembic revision (or ``revision``); safe when several processes start
    at once."""
    # Alembic announces each of its plugins at INFO when it is imported, in every worker: noise, not news.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from alembic import command
    from alembic.config import Config as AlembicConfig

    script_location = str(resources.files("outcrop.store") / "migrations")
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", script_location)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_ID})
        try:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
        finally:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_ID})
                conn.commit()
