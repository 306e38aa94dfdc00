"""Reports: parameters validated with a message naming the parameter; the rollups answer exactly what
the raw events answer, for every granularity and grouping, untagged events included."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from outcrop.metering.queries import QueryError, iso, parse_query, run_query
from outcrop.metering.rollups import DAY_US, HOUR_US, MINUTE_US, ingest
from outcrop.store.engine import Store

ACCOUNT = "123456789012"
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
NOW = dt.datetime(2026, 3, 15, 12, 30, tzinfo=dt.UTC)


def _event(n: int, time_us: int, profile: str | None, tags: dict[str, str], outcome: str = "success",
           account: str = ACCOUNT) -> dict[str, Any]:
    arn = f"arn:aws:bedrock:us-east-1:{account}:application-inference-profile/{profile}" if profile else None
    return {
        "request_id": f"r{n:06d}", "time_us": time_us, "account": account, "source_region": "us-east-1",
        "inference_region": "us-east-1", "operation": "Converse", "model_id": profile or "amazon.nova-micro-v1:0",
        "model_dim": profile or "amazon.nova-micro-v1:0", "profile_arn": arn, "profile_id": profile,
        "profile_type": "APPLICATION" if profile else None, "foundation_model": "amazon.nova-micro-v1:0",
        "input_tokens": 100 + n, "output_tokens": 10 + n % 7, "cache_read_tokens": n % 3, "cache_write_tokens": 0,
        "latency_ms": 20, "ttft_ms": None, "outcome": outcome,
        "error_code": None if outcome == "success" else "ThrottlingException", "cost_pusd": 35_000 * (100 + n),
        "identity": f"arn:aws:iam::{account}:user/u{n % 2}", "tags": tags,
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path: Path = tmp_path_factory.mktemp("queries") / "o.db"
    store = Store(f"sqlite:///{path}")
    store.migrate()
    events = []
    outcomes = ("success", "success", "client_error", "server_error", "throttled")
    for n in range(600):
        time_us = T0 + n * 97 * MINUTE_US + n * 1_000_003  # spread over ~40 days, odd offsets
        profile = ("teamred", "teamblue", None)[n % 3]
        tags = {"team": profile[4:], "env": "prod"} if profile else {}
        if n % 11 == 0 and profile:
            tags = {"env": "dev"}  # an application profile without the team tag
        event = _event(n, time_us, profile, tags, outcomes[n % len(outcomes)])
        if n % 4 == 0:
            event["request_metadata"] = {"tenant": f"t{n % 3}", "job": str(n)}
        elif n % 4 == 1:
            event["request_metadata"] = {"job": str(n)}
        # else: no request_metadata at all, as events journaled by an earlier version
        events.append(event)
    events.append(_event(999, T0 + DAY_US, None, {}, account="210987654321"))  # another account: never seen
    for i in range(0, len(events), 128):  # several batches, as the drainer commits them
        store.write_sync(lambda conn, b=events[i:i + 128]: ingest(conn, b))  # type: ignore[misc]
    yield store
    store.close()


QUERIES = [
    ("2026-01-01", "2026-02-10", "day", ["tag:team"]),
    ("2026-01-01", "2026-03-01", "month", ["profile", "tag:team"]),
    ("2026-01-03T05:00:00Z", "2026-01-09T17:00:00Z", "hour", ["model", "identity"]),
    ("2026-01-03T05:17:00Z", "2026-01-04T06:03:00Z", "minute", ["tag:env", "region"]),
    ("2026-01-02T05:17:31Z", "2026-01-20T06:03:10Z", None, ["modelId"]),
    ("2026-01-01", "2026-02-10", None, []),
]


@pytest.mark.parametrize(("since", "until", "granularity", "group_by"), QUERIES)
def test_rollups_answer_exactly_what_the_raw_events_answer(store: Store, since: str, until: str,
                                                           granularity: str | None, group_by: list[str]) -> None:
    q = parse_query(ACCOUNT, since, until, granularity, group_by, now=NOW)
    from_rollups = store.read_sync(lambda conn: run_query(conn, q))
    from_events = store.read_sync(lambda conn: run_query(conn, q, source="events"))
    assert from_rollups["rows"], "the query should cover some events"
    assert from_rollups == from_events


def test_untagged_events_form_the_null_group_and_totals_count_every_event(store: Store) -> None:
    q = parse_query(ACCOUNT, "2026-01-01", "2026-03-01", None, ["tag:team"], now=NOW)
    report = store.read_sync(lambda conn: run_query(conn, q))
    groups = {row["tag:team"]: row for row in report["rows"]}
    assert set(groups) == {"red", "blue", None}
    assert report["totals"]["invocations"] + report["totals"]["throttles"] == 600
    assert sum(r["invocations"] for r in report["rows"]) == report["totals"]["invocations"]


def test_request_metadata_groups_come_from_the_events_and_calls_without_the_key_form_the_null_group(
        store: Store) -> None:
    q = parse_query(ACCOUNT, "2026-01-01", "2026-03-01", "month", ["metadata:tenant", "tag:team"], now=NOW)
    report = store.read_sync(lambda conn: run_query(conn, q))
    assert report == store.read_sync(lambda conn: run_query(conn, q, source="events"))
    seen: dict[str | None, int] = {}
    for row in report["rows"]:
        seen[row["metadata:tenant"]] = seen.get(row["metadata:tenant"], 0) + row["invocations"] + row["throttles"]
    # n % 4 == 0 carry a tenant (t0, t1, t2 by n % 3); the rest, with other keys or none, are null
    expected: dict[str | None, int] = {}
    for n in range(600):
        key = f"t{n % 3}" if n % 4 == 0 else None
        expected[key] = expected.get(key, 0) + 1
    assert seen == expected
    by_all = parse_query(ACCOUNT, "2026-01-01", "2026-03-01", None, [], now=NOW)
    assert report["totals"] == store.read_sync(lambda conn: run_query(conn, by_all))["totals"]


def test_a_report_never_includes_another_accounts_events(store: Store) -> None:
    q = parse_query("210987654321", "2026-01-01", "2026-03-01", None, [], now=NOW)
    assert store.read_sync(lambda conn: run_query(conn, q))["totals"]["invocations"] == 1


def test_times_are_rounded_out_to_whole_minutes_and_default_to_this_month() -> None:
    q = parse_query(ACCOUNT, "2026-01-01T10:00:30Z", "2026-01-01T10:05:01Z", None, [], now=NOW)
    assert (q.since_us, q.until_us) == (T0 + 10 * HOUR_US, T0 + 10 * HOUR_US + 6 * MINUTE_US)
    default = parse_query(ACCOUNT, None, None, None, [], now=NOW)
    assert dt.datetime.fromtimestamp(default.since_us / 1e6, dt.UTC) == dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(("since", "until", "granularity", "group_by", "names"), [
    ("yesterday", None, None, [], "since"),
    ("2026-02-01", "2026-01-01", None, [], "until"),
    ("2026-01-01", "2026-02-01", "week", [], "granularity"),
    ("2026-01-01", "2026-02-01", None, ["colour"], "groupBy"),
    ("2026-01-01", "2026-02-01", None, ["tag:a,tag:b"], "tag:KEY"),
    ("2026-01-01", "2026-02-01", None, ["tag:\x00"], "a tag key is"),  # before: a 500 on PostgreSQL
    ("2026-01-01", "2026-02-01", None, ["metadata:"], "a requestMetadata key is"),
])
def test_bad_parameters_are_refused_naming_the_parameter(since: str, until: str | None, granularity: str | None,
                                                         group_by: list[str], names: str) -> None:
    with pytest.raises(QueryError, match=names):
        parse_query(ACCOUNT, since, until, granularity, group_by, now=NOW)


def test_times_beyond_what_a_report_can_span_are_clamped_not_a_500() -> None:
    """Before: until=9999-12-31T23:59:30Z rounded up past year 9999 (a 500), and since=0001-01-01 was
    echoed as '1-01-01T00:00:00Z'."""
    q = parse_query(ACCOUNT, "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:30Z", None, [], now=NOW)
    assert (iso(q.since_us), iso(q.until_us)) == ("1970-01-01T00:00:00Z", "9999-12-31T23:59:00Z")


def test_a_metadata_key_may_hold_a_comma_and_a_tag_key_whitespace() -> None:
    """AWS allows a comma in a requestMetadata key and whitespace in both kinds of key: a comma separates
    groupBy names only where a dimension follows it."""
    q = parse_query(ACCOUNT, "2026-01-01", "2026-02-01", None, ["profile, metadata:cost,center", "tag:team a"], now=NOW)
    assert q.group_by == ("profile", "metadata:cost,center", "tag:team a")
    assert parse_query(ACCOUNT, "2026-01-01", "2026-02-01", None, [" model ,region"], now=NOW).group_by == (
        "model", "region")
