"""Ingesting a batch of events: raw rows plus per-minute/hour/day rollups, in one transaction.

``ingest`` inserts the events by request ID, skipping any the database already holds, sums exactly the
new ones in memory by rollup row, and upserts each distinct row once (``INSERT … ON CONFLICT DO UPDATE SET
n = n + excluded.n``). Both happen in the caller's transaction, so rollups always equal the raw
events: a replayed journal never counts an event twice, and a failed batch leaves neither.

Each event adds to one row per granularity with ``tag_key = ""`` (every event, once), and to one row per
granularity for each of its tags (``tag_key``, ``tag_value``), which is what ``groupBy=tag:KEY`` reads.
Events of one batch are close in time, so a batch of thousands touches a few rows per minute.

Inserting: a batch is almost always new (only a replayed journal, or a retry after a commit whose outcome
was lost, repeats events), so it is first inserted as is (multi-row INSERTs of ``_EVENT_CHUNK`` rows), in
a savepoint; if any request ID is already there the savepoint is rolled back and the batch inserted again
with ``ON CONFLICT DO NOTHING RETURNING request_id``, which tells which were new.

The statements are plain SQL, the same for SQLite and PostgreSQL but for the parameter marker, run
through the driver (``exec_driver_sql``): ingest is the one bulk path, and per-row work in Python is what
limits it.
"""

from __future__ import annotations

import itertools
import operator
import time
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from outcrop.metering.events import UsageEvent
from outcrop.store.schema import usage_events, usage_rollups

MINUTE_US = 60_000_000
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
GRANULARITIES: dict[str, int] = {"m": MINUTE_US, "h": HOUR_US, "d": DAY_US}
METRICS = ("events", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
           "client_errors", "server_errors", "throttles", "latency_ms", "cost_pusd")
KEY = ("account", "granularity", "tag_key", "period_us", "source_region", "model_dim", "profile_arn",
       "foundation_model", "identity", "tag_value")
# Rows per multi-row INSERT (SQLite allows 32,766 parameters per statement), and events between two
# yields of the GIL: ingest runs on a thread beside the event loop, and the loop must never wait long
# for the GIL (at the default switch interval it would wait up to 5 ms for a thread that never lets go).
_EVENT_CHUNK = 200
_YIELD_EVERY = 200
_ROLLUP_CHUNK = 1000

RollupKey = tuple[str, str, str, int, str, str, str, str, str, str]

# The event columns, the two stored as JSON text last.
_JSON_COLUMNS = ("request_metadata", "tags")
EVENT_COLUMNS = (*(c.name for c in usage_events.columns if c.name not in _JSON_COLUMNS), *_JSON_COLUMNS)
_plain_values = operator.itemgetter(*EVENT_COLUMNS[:-2])
_dumps = orjson.dumps
_SORT_KEYS = orjson.OPT_SORT_KEYS


def event_row(event: UsageEvent) -> tuple[Any, ...]:
    """The event as a ``usage_events`` row, in ``EVENT_COLUMNS`` order. (An event journaled by an earlier
    version has no ``request_metadata``.)"""
    return (*_plain_values(event), _dumps(event.get("request_metadata") or {}, option=_SORT_KEYS).decode(),
            _dumps(event["tags"], option=_SORT_KEYS).decode())


def metric_values(event: UsageEvent) -> tuple[int, ...]:
    outcome = event["outcome"]
    return (1, event["input_tokens"], event["output_tokens"], event["cache_read_tokens"],
            event["cache_write_tokens"], int(outcome == "client_error"), int(outcome == "server_error"),
            int(outcome == "throttled"), event["latency_ms"], event["cost_pusd"])


def rollup_deltas(events: Sequence[UsageEvent]) -> dict[RollupKey, list[int]]:
    """The sums each rollup row gains from these events.

    Two steps, so that the per-event work is one dictionary update: sum the events by minute cell
    (everything a rollup row is keyed by, tags included), then spread each cell over its granularities
    and tag rows.
    """
    cells: dict[tuple[Any, ...], list[int]] = {}
    for i, event in enumerate(events, 1):
        if i % _YIELD_EVERY == 0:
            time.sleep(0)  # (see _YIELD_EVERY)
        tags = event["tags"]
        time_us = event["time_us"]
        key = (event["account"], time_us - time_us % MINUTE_US, event["source_region"], event["model_dim"],
               event["profile_arn"] or "", event["foundation_model"], event["identity"][:512],
               tuple(sorted(tags.items())) if tags else ())
        outcome = event["outcome"]
        row = cells.get(key)
        if row is None:
            cells[key] = [1, event["input_tokens"], event["output_tokens"], event["cache_read_tokens"],
                          event["cache_write_tokens"], outcome == "client_error", outcome == "server_error",
                          outcome == "throttled", event["latency_ms"], event["cost_pusd"]]
        else:
            row[0] += 1
            row[1] += event["input_tokens"]
            row[2] += event["output_tokens"]
            row[3] += event["cache_read_tokens"]
            row[4] += event["cache_write_tokens"]
            row[5] += outcome == "client_error"
            row[6] += outcome == "server_error"
            row[7] += outcome == "throttled"
            row[8] += event["latency_ms"]
            row[9] += event["cost_pusd"]
    deltas: dict[RollupKey, list[int]] = {}
    for (account, minute, *rest, tags), values in cells.items():
        for granularity, width in GRANULARITIES.items():
            period = minute - minute % width
            for tag_key, tag_value in (("", ""), *tags):
                key = (account, granularity, tag_key, period, *rest, tag_value)
                row = deltas.get(key)  # type: ignore[arg-type]
                if row is None:
                    deltas[key] = [int(v) for v in values]  # type: ignore[index]
                else:
                    row[:] = map(operator.add, row, values)
    return deltas


def ingest(conn: Connection, events: Sequence[UsageEvent]) -> list[UsageEvent]:
    """Insert the events the database does not hold yet, and add them to the rollups; returns those."""
    if not events:
        return []
    by_id = {e["request_id"]: e for e in events}
    rows = []
    for i, event in enumerate(by_id.values(), 1):
        rows.append(event_row(event))
        if i % _YIELD_EVERY == 0:
            time.sleep(0)  # give the GIL to the event loop if it is waiting
    marker = _marker(conn)
    savepoint = conn.begin_nested()
    try:
        # Multi-row INSERTs rather than executemany: one statement (and one GIL hand-off in the driver) per
        # chunk, not per row.
        for n, params in _chunks(rows, _EVENT_CHUNK):
            conn.exec_driver_sql(_insert_events_sql(marker, n, returning=False), params)
    except IntegrityError:
        savepoint.rollback()
        new_ids: set[str] = set()
        for n, params in _chunks(rows, _EVENT_CHUNK):
            new_ids.update(r[0] for r in conn.exec_driver_sql(_insert_events_sql(marker, n, returning=True), params))
        fresh = [by_id[i] for i in by_id if i in new_ids]
    else:
        savepoint.commit()
        fresh = list(by_id.values())
    add_to_rollups(conn, rollup_deltas(fresh))
    return fresh


def add_to_rollups(conn: Connection, deltas: dict[RollupKey, list[int]]) -> None:
    """Upsert each row once: insert it, or add to the sums of the row already there."""
    if not deltas:
        return
    # In key order, so that concurrent writers (several processes on PostgreSQL) never deadlock.
    rows = [(*key, *values) for key, values in sorted(deltas.items())]
    marker = _marker(conn)
    for n, params in _chunks(rows, _ROLLUP_CHUNK):
        conn.exec_driver_sql(_upsert_rollups_sql(marker, n), params)


def _chunks(rows: Sequence[tuple[Any, ...]], size: int) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """(rows in the chunk, their parameters flattened) for each multi-row statement of ``size`` rows at most."""
    for i in range(0, len(rows), size):
        chunk = rows[i : i + size]
        yield len(chunk), tuple(itertools.chain.from_iterable(chunk))


def _marker(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _values(marker: str, width: int, rows: int) -> str:
    one = "(" + ", ".join([marker] * width) + ")"
    return ", ".join([one] * rows)


@lru_cache(maxsize=32)  # one per chunk size in use; a batch's last chunk varies
def _insert_events_sql(marker: str, rows: int, *, returning: bool) -> str:
    sql = f"INSERT INTO {usage_events.name} ({', '.join(EVENT_COLUMNS)}) VALUES {_values(marker, len(EVENT_COLUMNS), rows)}"
    return sql + " ON CONFLICT (request_id) DO NOTHING RETURNING request_id" if returning else sql


@lru_cache(maxsize=32)
def _upsert_rollups_sql(marker: str, rows: int) -> str:
    table = usage_rollups.name
    sums = ", ".join(f"{m} = {table}.{m} + excluded.{m}" for m in METRICS)
    return (f"INSERT INTO {table} ({', '.join(KEY + METRICS)}) VALUES {_values(marker, len(KEY) + len(METRICS), rows)} "
            f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {sums}")
