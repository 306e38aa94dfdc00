"""Usage and cost reports: ``GET /_outcrop/usage`` and ``outcrop usage`` / ``outcrop costs``.

A query is (account, since, until, granularity, groupBy). ``since`` and ``until`` are rounded out to
whole minutes (``since`` down, ``until`` up), the finest rollup. The report reads the coarsest rollup
whose periods tile the interval and are no coarser than the granularity asked (a 30-day daily report
reads 30 day rows per group, never the events), sums it by the group keys in SQL, and folds periods
into the granularity asked (months from days). ``groupBy=tag:KEY`` reads the tag rows of KEY; the
events without that tag form the group whose value is ``null`` (all events minus the tagged ones).

``groupBy=metadata:KEY`` groups by a value of the Converse calls' ``requestMetadata`` (events without
that key form the group whose value is ``null``). Request metadata is free-form and per call, so it has no
rollups: such a report is always computed from the events.

``source="events"`` computes the same report from the raw events instead: slower, and the oracle the
tests hold the rollups to.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from outcrop.metering.prices import PICO_PER_USD
from outcrop.metering.rollups import DAY_US, HOUR_US, METRICS, MINUTE_US, metric_values
from outcrop.store.schema import usage_events, usage_rollups

GRANULARITIES = ("minute", "hour", "day", "month")
_WIDTH = {"minute": MINUTE_US, "hour": HOUR_US, "day": DAY_US}
_STORED = (("d", DAY_US), ("h", HOUR_US), ("m", MINUTE_US))
# groupBy name → rollup / event column
DIMENSIONS = {"profile": "profile_arn", "model": "foundation_model", "region": "source_region",
              "identity": "identity", "modelId": "model_dim"}
OUTPUT = {"events": None, "input_tokens": "inputTokens", "output_tokens": "outputTokens",
          "cache_read_tokens": "cacheReadTokens", "cache_write_tokens": "cacheWriteTokens",
          "client_errors": "clientErrors", "server_errors": "serverErrors", "throttles": "throttles",
          "latency_ms": None, "cost_pusd": None}
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
METADATA = "metadata:"  # groupBy prefix: a key of the calls' requestMetadata


class QueryError(ValueError):
    """The query cannot be answered as asked; the message says which parameter and why."""


@dataclass(frozen=True)
class UsageQuery:
    account: str
    since_us: int
    until_us: int
    granularity: str | None = None
    group_by: tuple[str, ...] = ()

    @property
    def tag_key(self) -> str | None:
        return next((g[4:] for g in self.group_by if g.startswith("tag:")), None)

    @property
    def metadata_key(self) -> str | None:
        return next((g[len(METADATA):] for g in self.group_by if g.startswith(METADATA)), None)


def to_us(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (value - EPOCH) // dt.timedelta(microseconds=1)


def iso(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# The times a report can span: no usage event is older than the epoch, and the last whole minute that
# ``datetime`` can hold rounds up to one it can still print.
EARLIEST_US = 0
LATEST_US = to_us(dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.UTC))
# groupBy keys as AWS allows them: a tag key (bedrock's TagKey) and a requestMetadata key
# (bedrock-runtime's RequestMetadataKeyString); a comma inside one is kept (see ``_group_names``).
TAG_KEY = re.compile(r"[a-zA-Z0-9\s._:/=+@-]{1,128}")
METADATA_KEY = re.compile(r"[a-zA-Z0-9\s:_@$#=/+,\-.]{1,256}")


def parse_time(name: str, text: str) -> int:
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"{name}: {text!r} is not an ISO-8601 time (e.g. 2026-01-31 or 2026-01-31T12:00:00Z)") from None
    return to_us(value)


def parse_query(account: str, since: str | None, until: str | None, granularity: str | None,
                group_by: Iterable[str], now: dt.datetime | None = None) -> UsageQuery:
    """Validate the parameters; default: from the start of this UTC month until now."""
    now = now or dt.datetime.now(dt.UTC)
    since_us = parse_time("since", since) if since else to_us(dt.datetime(now.year, now.month, 1, tzinfo=dt.UTC))
    until_us = parse_time("until", until) if until else to_us(now)
    since_us = max(since_us, EARLIEST_US)
    until_us = min(until_us, LATEST_US)
    since_us -= since_us % MINUTE_US
    until_us += -until_us % MINUTE_US
    if until_us <= since_us:
        raise QueryError("until must be later than since")
    if granularity is not None and granularity not in GRANULARITIES:
        raise QueryError(f"granularity must be one of {', '.join(GRANULARITIES)}, not {granularity!r}")
    groups: list[str] = []
    for g in group_by:
        for name in _group_names(g):
            if name.startswith("tag:"):
                if not TAG_KEY.fullmatch(name[4:]):
                    raise QueryError(f"groupBy {name!r}: a tag key is 1 to 128 letters, digits, whitespace or . _ : / = + @ -")
            elif name.startswith(METADATA):
                if not METADATA_KEY.fullmatch(name[len(METADATA):]):
                    raise QueryError(f"groupBy {name!r}: a requestMetadata key is 1 to 256 letters, digits, whitespace "
                                     "or : _ @ $ # = / + , - .")
            elif name not in DIMENSIONS:
                raise QueryError(f"groupBy {name!r} is not one of {', '.join(DIMENSIONS)}, tag:KEY or metadata:KEY")
            if name not in groups:
                groups.append(name)
    if sum(g.startswith("tag:") for g in groups) > 1:
        raise QueryError("groupBy takes at most one tag:KEY")
    if sum(g.startswith(METADATA) for g in groups) > 1:
        raise QueryError("groupBy takes at most one metadata:KEY")
    return UsageQuery(account, since_us, until_us, granularity, tuple(groups))


def _group_names(text: str) -> list[str]:
    """The names in one groupBy value: separated by commas, except that a comma followed by anything but a
    dimension (``profile``, ``tag:…`` …) belongs to the key before it (``metadata:cost,center``). A key keeps
    its whitespace (AWS allows it in tag and metadata keys); a dimension's name is read without."""
    names: list[str] = []
    for part in text.split(","):
        head = part.strip()
        if names and not (head in DIMENSIONS or head.startswith(("tag:", METADATA))):
            names[-1] += "," + part
        elif head:
            names.append(head if head in DIMENSIONS else part.lstrip())
    return names


def period_of(us: int, granularity: str) -> int:
    if granularity == "month":
        day = dt.datetime.fromtimestamp(us / 1e6, dt.UTC)
        return to_us(dt.datetime(day.year, day.month, 1, tzinfo=dt.UTC))
    width = _WIDTH[granularity]
    return us - us % width


def _stored_granularity(q: UsageQuery) -> str:
    for code, width in _STORED:
        if q.since_us % width or q.until_us % width:
            continue
        if q.granularity is not None and q.granularity != "month" and _WIDTH[q.granularity] < width:
            continue
        return code
    return "m"


Key = tuple[Any, ...]


def run_query(conn: Connection, q: UsageQuery, source: str = "rollups") -> dict[str, Any]:
    """The report: ``{"rows": [...], "totals": {...}}``."""
    sums = _from_events(conn, q) if source == "events" or q.metadata_key is not None else _from_rollups(conn, q)
    return render(q, sums)


def _dims(q: UsageQuery) -> list[str]:
    return [g for g in q.group_by if not g.startswith("tag:")]


def _fold(into: dict[Key, list[int]], key: Key, values: Sequence[int], sign: int = 1) -> None:
    row = into.get(key)
    if row is None:
        into[key] = [sign * v for v in values]
    else:
        for i, v in enumerate(values):
            row[i] += sign * v


def _from_rollups(conn: Connection, q: UsageQuery) -> dict[Key, list[int]]:
    c = usage_rollups.c
    stored = _stored_granularity(q)
    dims = _dims(q)
    columns = [c.period_us] if q.granularity else []
    columns += [c[DIMENSIONS[d]] for d in dims]

    def select_sums(tag_key: str) -> Any:
        cols = columns + ([c.tag_value] if tag_key else [])
        statement = select(*cols, *(func.sum(c[m]) for m in METRICS)).where(
            c.account == q.account, c.granularity == stored, c.tag_key == tag_key,
            c.period_us >= q.since_us, c.period_us < q.until_us,
        )
        return conn.execute(statement.group_by(*cols) if cols else statement)

    n = len(columns)
    sums: dict[Key, list[int]] = {}
    tag = q.tag_key
    for row in select_sums(""):
        if row[n] is None:  # SUM over no rows
            continue
        key = _key(q, row[:n], None if tag is None else _UNTAGGED)
        _fold(sums, key, [int(v) for v in row[n:]])
    if tag is not None:
        for row in select_sums(tag):
            values = [int(v) for v in row[n + 1:]]
            _fold(sums, _key(q, row[:n], _UNTAGGED), values, sign=-1)
            _fold(sums, _key(q, row[:n], row[n]), values)
        sums = {k: v for k, v in sums.items() if v[0]}
    return sums


_UNTAGGED = object()


def _key(q: UsageQuery, parts: Sequence[Any], tag_value: Any) -> Key:
    parts = list(parts)
    if q.granularity:
        parts[0] = period_of(parts[0], q.granularity)
    return (*parts, tag_value) if tag_value is not None else tuple(parts)


def _from_events(conn: Connection, q: UsageQuery) -> dict[Key, list[int]]:
    c = usage_events.c
    rows = conn.execute(
        select(usage_events).where(c.account == q.account, c.time_us >= q.since_us, c.time_us < q.until_us)
    ).mappings()
    dims = _dims(q)
    tag = q.tag_key
    sums: dict[Key, list[int]] = {}
    for row in rows:
        event: Any = dict(row)
        event["tags"] = orjson.loads(row["tags"])
        parts: list[Any] = [row["time_us"]] if q.granularity else []
        for d in dims:
            if d.startswith(METADATA):
                parts.append(orjson.loads(row["request_metadata"]).get(d[len(METADATA):]))
            else:
                parts.append((row[DIMENSIONS[d]] or "") if d == "profile" else row[DIMENSIONS[d]])
        tag_value = None if tag is None else event["tags"].get(tag, _UNTAGGED)
        _fold(sums, _key(q, parts, tag_value), metric_values(event))
    return sums


def render(q: UsageQuery, sums: dict[Key, list[int]]) -> dict[str, Any]:
    dims = _dims(q)
    tag = q.tag_key
    out_rows = []
    totals = [0] * len(METRICS)
    for key in sorted(sums, key=lambda k: tuple("" if v is _UNTAGGED or v is None else str(v) for v in k)):
        values = sums[key]
        parts = list(key)
        row: dict[str, Any] = {}
        if q.granularity:
            row["period"] = iso(parts.pop(0))
        for d in dims:
            value = parts.pop(0)
            row[d] = value or None if d == "profile" else value
        if tag is not None:
            value = parts.pop(0)
            row[f"tag:{tag}"] = None if value is _UNTAGGED else value
        row.update(metrics_of(values))
        out_rows.append(row)
        for i, v in enumerate(values):
            totals[i] += v
    return {"since": iso(q.since_us), "until": iso(q.until_us), "granularity": q.granularity,
            "groupBy": list(q.group_by), "rows": out_rows, "totals": metrics_of(totals)}


def metrics_of(values: Sequence[int]) -> dict[str, Any]:
    named = dict(zip(METRICS, values, strict=True))
    out: dict[str, Any] = {"invocations": named["events"] - named["throttles"]}
    out.update({label: named[m] for m, label in OUTPUT.items() if label})
    out["costUsd"] = round(named["cost_pusd"] / PICO_PER_USD, 12)
    return out
