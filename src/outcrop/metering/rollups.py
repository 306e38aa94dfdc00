"""Ingesting a batch of events: raw rows plus per-minute/hour/day rollups, in one transaction.

``ingest`` inserts the events by request ID, skipping any the database already holds (``ON CONFLICT DO
NOTHING … RETURNING`` tells which were new), and adds exactly the new ones to the rollups with
``INSERT … ON CONFLICT DO UPDATE SET n = n + excluded.n``. Both happen in the caller's transaction,
so rollups always equal the raw events: a replayed journal never counts an event twice, and a failed
batch leaves neither.

Each event adds to one row per granularity with ``tag_key = ""`` (every event, once), and to one row per
granularity for each of its tags (``tag_key``, ``tag_value``), which is what ``groupBy=tag:KEY`` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

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
_CHUNK = 500

RollupKey = tuple[str, str, str, int, str, str, str, str, str, str]


def _dialect(conn: Connection) -> Any:
    return postgresql if conn.dialect.name == "postgresql" else sqlite


def event_row(event: UsageEvent) -> dict[str, Any]:
    return {**event, "tags": orjson.dumps(event["tags"], option=orjson.OPT_SORT_KEYS).decode()}


def metric_values(event: UsageEvent) -> tuple[int, ...]:
    outcome = event["outcome"]
    return (1, event["input_tokens"], event["output_tokens"], event["cache_read_tokens"],
            event["cache_write_tokens"], int(outcome == "client_error"), int(outcome == "server_error"),
            int(outcome == "throttled"), event["latency_ms"], event["cost_pusd"])


def rollup_deltas(events: Sequence[UsageEvent]) -> dict[RollupKey, list[int]]:
    """The sums each rollup row gains from these events."""
    deltas: dict[RollupKey, list[int]] = {}
    for event in events:
        values = metric_values(event)
        tags = [("", ""), *sorted(event["tags"].items())]
        identity = event["identity"][:512]
        for granularity, width in GRANULARITIES.items():
            period = event["time_us"] - event["time_us"] % width
            for tag_key, tag_value in tags:
                key: RollupKey = (event["account"], granularity, tag_key, period, event["source_region"],
                                  event["model_dim"], event["profile_arn"] or "", event["foundation_model"],
                                  identity, tag_value)
                row = deltas.get(key)
                if row is None:
                    deltas[key] = list(values)
                else:
                    for i, v in enumerate(values):
                        row[i] += v
    return deltas


def ingest(conn: Connection, events: Sequence[UsageEvent]) -> list[UsageEvent]:
    """Insert the events the database does not hold yet, and add them to the rollups; returns those."""
    if not events:
        return []
    dialect = _dialect(conn)
    by_id = {e["request_id"]: e for e in events}
    new_ids: set[str] = set()
    rows = [event_row(e) for e in by_id.values()]
    for i in range(0, len(rows), _CHUNK):
        statement = dialect.insert(usage_events).on_conflict_do_nothing().returning(usage_events.c.request_id)
        new_ids.update(conn.execute(statement, rows[i : i + _CHUNK]).scalars())
    fresh = [by_id[i] for i in by_id if i in new_ids]
    add_to_rollups(conn, rollup_deltas(fresh))
    return fresh


def add_to_rollups(conn: Connection, deltas: dict[RollupKey, list[int]]) -> None:
    if not deltas:
        return
    dialect = _dialect(conn)
    insert = dialect.insert(usage_rollups)
    statement = insert.on_conflict_do_update(
        index_elements=[usage_rollups.c[k] for k in KEY],
        set_={m: usage_rollups.c[m] + insert.excluded[m] for m in METRICS},
    )
    # In key order, so that concurrent writers (several processes on PostgreSQL) never deadlock.
    rows = [dict(zip(KEY, key, strict=True)) | dict(zip(METRICS, values, strict=True))
            for key, values in sorted(deltas.items())]
    for i in range(0, len(rows), _CHUNK):
        conn.execute(statement, rows[i : i + _CHUNK])
