"""The metering guarantee: every invocation whose answer the client received has its event, even when the
server is killed with ``kill -9`` under load; a graceful stop drains the journal completely."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

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


@pytest.mark.parametrize(("fsync", "ingest"), [("interval", "process"), ("always", "process"), ("interval", "thread")])
def test_kill_9_under_load_loses_no_acknowledged_event(
    server_factory: Callable[..., ServerProcess], database_url: str, fsync: str, ingest: str
) -> None:
    server = server_factory(database_url, OUTCROP_METERING_FSYNC=fsync, OUTCROP_METERING_INGEST=ingest)
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
    assert len(acknowledged) > 100, f"only {len(acknowledged)} acknowledged in 60 s: {server.log_text()[-2000:]}"
    journal = server.data_dir / "metering"
    assert any(journal.glob("*.jsonl")), server.log_text()[-2000:]

    server.start()  # the new process claims the dead one's journal and drains it before serving
    ids, rollup_events, _ = _stored(server.database_url)
    assert len(ids) == len(set(ids))
    missing = set(acknowledged) - set(ids)
    assert not missing, f"{len(missing)} acknowledged invocations have no usage event: {server.log_text()[-2000:]}"
    assert rollup_events == len(ids), (rollup_events, len(ids))  # rollups equal the raw events, replay included

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
    left = list(journal.glob("*.jsonl"))
    assert not left, f"a graceful stop left {left}: {server.log_text()[-2000:]}"
    ids_after, rollup_after, _ = _stored(server.database_url)
    assert set(acknowledged) <= set(ids_after), f"{len(set(acknowledged) - set(ids_after))} events lost by a graceful stop"
    assert rollup_after == len(ids_after) == len(ids) + len(acknowledged), (rollup_after, len(ids_after), len(ids), len(acknowledged))


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


def _ingesters(data_dir: Path) -> list[int]:
    """Pids of the live ingest processes following journals in ``data_dir``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"outcrop.metering.ingester" in argv and str(data_dir / "metering").encode() in argv and state != "Z":
            pids.append(int(proc.name))
    return pids


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _loaded(server: ServerProcess, acknowledged: list[str], during: Callable[[], None]) -> None:
    """Run ``during`` in the middle of 8 clients' load, and stop the load after it."""
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(server, acknowledged, stop)) for _ in range(8)]
    for t in threads:
        t.start()
    _until(lambda: len(acknowledged) >= 50, "the first invocations")
    during()
    stop.set()
    for t in threads:
        t.join()


def test_an_ingester_killed_under_load_is_replaced_and_loses_nothing(
    server_factory: Callable[..., ServerProcess], database_url: str
) -> None:
    server = server_factory(database_url)
    (first,) = _ingesters(server.data_dir)
    acknowledged: list[str] = []

    def kill_the_ingester() -> None:
        os.kill(first, signal.SIGKILL)
        _until(lambda: [p for p in _ingesters(server.data_dir) if p != first] != [], "a new ingester")
        before = len(acknowledged)
        _until(lambda: len(acknowledged) >= before + 50, "more invocations")

    _loaded(server, acknowledged, kill_the_ingester)
    with httpx.Client(base_url=server.url) as client:
        report = client.get("/_outcrop/usage").json()  # read-your-writes through the new ingester
        metrics = client.get("/metrics").text
    assert report["totals"]["invocations"] == len(acknowledged)
    assert "outcrop_metering_ingester_restarts_total 1.0" in metrics
    assert "outcrop_metering_backlog_events 0.0" in metrics  # all stored, as the report waited for
    server.stop()
    ids, rollup_events, _ = _stored(server.database_url)
    assert sorted(ids) == sorted(acknowledged)
    assert rollup_events == len(ids)
    left = list((server.data_dir / "metering").iterdir())
    assert not left, f"journal left after {'a SIGKILL' if server.killed else 'a graceful stop'}: {left}\n" \
                     f"{server.log_text()[-4000:]}"


def test_a_server_killed_alone_leaves_its_ingester_to_store_the_rest(
    server_factory: Callable[..., ServerProcess], database_url: str
) -> None:
    server = server_factory(database_url)
    (ingester,) = _ingesters(server.data_dir)
    worker = _parent(ingester)
    acknowledged: list[str] = []

    def kill_the_server_but_not_its_ingester() -> None:
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGKILL)  # the main process first: with workers, it would start a new one
        os.kill(worker, signal.SIGKILL)
        server.proc.wait(10)
        server.proc = None

    _loaded(server, acknowledged, kill_the_server_but_not_its_ingester)
    _until(lambda: ingester not in _ingesters(server.data_dir), "the ingester to finish")
    ids, rollup_events, _ = _stored(server.database_url)
    missing = set(acknowledged) - set(ids)
    assert not missing, f"{len(missing)} acknowledged invocations have no usage event"
    assert len(ids) == len(set(ids)) and rollup_events == len(ids)
    assert not list((server.data_dir / "metering").iterdir())  # segments, progress and lock: gone
