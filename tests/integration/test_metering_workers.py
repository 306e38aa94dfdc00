"""Two server processes on one database and one data directory: every invocation, whichever worker served
it, has exactly one usage event, and the rollups count each once."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import create_engine, func, select

from outcrop.store.engine import normalize_url
from outcrop.store.schema import usage_events, usage_rollups
from tests.conftest import ServerProcess

MODEL = "amazon.nova-micro-v1:0"
BODY = {"messages": [{"role": "user", "content": [{"text": "Count the strata"}]}]}


def test_with_two_workers_every_invocation_has_exactly_one_event(
    server_factory: Callable[..., ServerProcess], database_url: str,
) -> None:
    server = server_factory(database_url, args=["--workers", "2"])
    server.wait_for_workers(2)  # both serve, and both meter: each its own journal

    def invoke_many(_: int) -> list[str]:
        with httpx.Client(base_url=server.url, timeout=30) as client:  # a connection each: both workers serve
            out = []
            for _ in range(25):
                r = client.post(f"/model/{MODEL}/converse", json=BODY)
                assert r.status_code == 200, r.text
                out.append(r.headers["x-amzn-requestid"])
            return out

    with ThreadPoolExecutor(8) as pool:
        acknowledged = [rid for rids in pool.map(invoke_many, range(8)) for rid in rids]
    assert len(set(acknowledged)) == 200
    server.stop()  # a graceful stop drains both workers' journals

    engine = create_engine(normalize_url(database_url))
    with engine.connect() as conn:
        rows = conn.execute(
            select(usage_events.c.request_id, func.count()).group_by(usage_events.c.request_id)
        ).all()
        rolled = conn.execute(select(func.sum(usage_rollups.c.events)).where(
            usage_rollups.c.granularity == "d", usage_rollups.c.tag_key == "")).scalar()
    engine.dispose()
    counts = dict(rows)
    assert set(counts) == set(acknowledged)
    assert set(counts.values()) == {1}
    assert rolled == 200
