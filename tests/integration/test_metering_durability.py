"""The metering guarantee: every invocation whose answer the client received has its event, even when the
server is killed with ``kill -9`` under load; a graceful stop drains the journal completely."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from outcrop.store.engine import normalize_url
from outcrop.store.schema import usage_events, usage_rollups
from tests.conftest import ServerProcess

MODEL = "amazon.nova-micro-v1:0"
BODY = {"messages": [{"role": "user", "content": [{"text": "Count the strata"}]}]}


def _load(server: ServerProcess, acknowledged: list[str], stop: threading.Event) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        while not stop.is_set():
            try:
                r = client.post(f"/model/{MODEL}/converse", json=BODY)
            except httpx.HTTPError:
                return  # the server is gone
            if r.status_code == 200:
                acknowledged.append(r.headers["x-amzn-requestid"])


def _stored(database_url: str) -> tuple[list[str], int, int]:
    engine = create_engine(normalize_url(database_url))
    with engine.connect() as conn:
        ids = list(conn.execute(select(usage_events.c.request_id)).scalars())
        rollup = conn.execute(select(func.sum(usage_rollups.c.events)).where(
            usage_rollups.c.granularity == "m", usage_rollups.c.tag_key == "")).scalar() or 0
        tokens = conn.execute(select(func.sum(usage_events.c.output_tokens))).scalar() or 0
    engine.dispose()
    return ids, int(rollup), int(tokens)


@pytest.mark.parametrize("fsync", ["interval", "always"])
def test_kill_9_under_load_loses_no_acknowledged_event(
    server_factory: Callable[..., ServerProcess], database_url: str, fsync: str
) -> None:
    server = server_factory(database_url, OUTCROP_METERING_FSYNC=fsync)
    acknowledged: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(server, acknowledged, stop)) for _ in range(16)]
    for t in threads:
        t.start()
    # Kill once a good number of invocations were acknowledged, however slow the machine is today.
    deadline = time.monotonic() + 60
    while len(acknowledged) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill9()
    stop.set()
    for t in threads:
        t.join()
    assert len(acknowledged) > 100
    journal = server.data_dir / "metering"
    assert any(journal.glob("*.jsonl"))

    server.start()  # the new process claims the dead one's journal and drains it before serving
    ids, rollup_events, _ = _stored(server.database_url)
    assert len(ids) == len(set(ids))
    missing = set(acknowledged) - set(ids)
    assert not missing, f"{len(missing)} acknowledged invocations have no usage event"
    assert rollup_events == len(ids)  # rollups equal the raw events, replay included

    # A graceful stop drains everything: an empty journal, and every event in the database.
    acknowledged.clear()
    stop.clear()
    threads = [threading.Thread(target=_load, args=(server, acknowledged, stop)) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    server.stop()
    assert not list(journal.glob("*.jsonl"))
    ids_after, rollup_after, _ = _stored(server.database_url)
    assert set(acknowledged) <= set(ids_after)
    assert rollup_after == len(ids_after) == len(ids) + len(acknowledged)


def test_events_are_written_once_when_a_journal_is_replayed(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as client:
        rids = [client.post(f"/model/{MODEL}/converse", json=BODY).headers["x-amzn-requestid"] for _ in range(20)]
        assert client.get("/_outcrop/usage").status_code == 200  # every event is in the database now
    journal = server.data_dir / "metering"
    # Copy the live journal as if it were a dead process's: its events are all stored already.
    live = next(journal.glob("*.jsonl")).read_bytes()
    (journal / "999999-deadbeef-000001.jsonl").write_bytes(live)
    server.kill9()
    server.start()
    ids, rollup_events, _ = _stored(server.database_url)
    assert set(rids) <= set(ids) and len(ids) == 20 and rollup_events == 20
    assert not (journal / "999999-deadbeef-000001.jsonl").exists()
