"""The journal: appended lines are durable when their future resolves, many share one fsync, a dead
process's segments are claimed and read back with a torn last line skipped, and replaying them never
counts an event twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from outcrop.metering.events import UsageEvent
from outcrop.metering.journal import Journal, claim_orphans
from outcrop.metering.rollups import ingest
from outcrop.store.engine import Store


def _line(n: int) -> bytes:
    return orjson.dumps({"n": n}, option=orjson.OPT_APPEND_NEWLINE)


def _event(n: int, **changes: Any) -> UsageEvent:
    event: dict[str, Any] = {
        "request_id": f"req-{n:04d}", "time_us": 1_767_225_600_000_000 + n * 7_000_000, "account": "123456789012",
        "source_region": "us-east-1", "inference_region": "us-east-1", "operation": "Converse",
        "model_id": "amazon.nova-micro-v1:0", "model_dim": "amazon.nova-micro-v1:0", "profile_arn": None,
        "profile_id": None, "profile_type": None, "foundation_model": "amazon.nova-micro-v1:0",
        "input_tokens": 10 + n, "output_tokens": 20, "cache_read_tokens": 0, "cache_write_tokens": 0,
        "latency_ms": 5, "ttft_ms": None, "outcome": "success", "error_code": None, "cost_pusd": 1000 + n,
        "identity": "arn:aws:iam::123456789012:root", "tags": {"team": "red"} if n % 2 else {},
    }
    event.update(changes)
    return event  # type: ignore[return-value]


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl"))


def test_appended_lines_are_on_disk_in_order_when_their_futures_resolve(tmp_path: Path) -> None:
    journal = Journal(tmp_path)

    async def append_all() -> list[int]:
        appended = [journal.append(_line(n)) for n in range(50)]
        await asyncio.gather(*(future for _, future in appended))
        return [seq for seq, _ in appended]

    seqs = asyncio.run(append_all())
    assert seqs == list(range(1, 51))
    assert journal.synced == 50
    (segment,) = _segments(tmp_path)
    assert segment.read_bytes() == b"".join(_line(n) for n in range(50))
    journal.close()
    assert _segments(tmp_path) == [segment]  # the journal only appends: its ingester deletes what it stored


def test_lines_appended_together_share_one_write_and_one_fsync(tmp_path: Path) -> None:
    journal = Journal(tmp_path)

    async def burst() -> None:
        futures = [journal.append(_line(n))[1] for n in range(500)]  # no await between: one group
        await asyncio.gather(*futures)

    asyncio.run(burst())
    # Lines appended together share flushes. How many groups form depends on when the flusher thread gets
    # the GIL (a loaded machine makes more), so the bound is "far fewer than one per line", not an exact 1.
    assert journal.fsyncs <= 50
    journal.close()


def test_a_cancelled_waiter_does_not_cancel_the_others_in_its_group(tmp_path: Path) -> None:
    journal = Journal(tmp_path)

    async def main() -> None:
        first, second = journal.append(_line(1))[1], journal.append(_line(2))[1]
        first.cancel()
        await second

    asyncio.run(main())
    journal.close()


def test_segments_roll_over(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=100)

    async def one_at_a_time() -> None:
        for n in range(30):
            await journal.append(_line(n))[1]

    asyncio.run(one_at_a_time())
    assert len(_segments(tmp_path)) > 1
    assert b"".join(p.read_bytes() for p in _segments(tmp_path)) == b"".join(_line(n) for n in range(30))
    assert len(journal._segments) == 1  # full segments are closed at once: each was synced as it was written
    journal.close()


def test_a_live_journal_is_never_claimed_and_a_dead_ones_is(tmp_path: Path) -> None:
    live = Journal(tmp_path)
    assert claim_orphans(tmp_path, own_owner="someone-else") == []
    (tmp_path / "4242-0badf00d-000001.jsonl").write_bytes(_line(1))  # no lock held: its process is gone
    (orphan,) = claim_orphans(tmp_path, own_owner=live.owner)
    assert orphan.owner == "4242-0badf00d"
    assert claim_orphans(tmp_path, own_owner="third") == []  # claimed: locked until done()
    orphan.done()
    assert not (tmp_path / "4242-0badf00d-000001.jsonl").exists()
    live.close()


def test_a_torn_last_line_after_a_crash_is_skipped(tmp_path: Path) -> None:
    whole = [orjson.dumps(_event(n), option=orjson.OPT_APPEND_NEWLINE) for n in range(3)]
    torn = orjson.dumps(_event(3))[:40]  # the process died inside write(2)
    (tmp_path / "4242-0badf00d-000001.jsonl").write_bytes(b"".join(whole))
    (tmp_path / "4242-0badf00d-000002.jsonl").write_bytes(whole[0] + torn)
    (orphan,) = claim_orphans(tmp_path, own_owner="me")
    lines = orphan.lines()
    assert lines == [w.rstrip(b"\n") for w in [*whole, whole[0]]]
    assert orphan.lines() == []
    assert all(orjson.loads(line) for line in lines)
    orphan.done()


def _totals(store: Store) -> tuple[int, int, int]:
    def read(conn: Any) -> tuple[int, int, int]:
        events = conn.exec_driver_sql("SELECT count(*), sum(input_tokens) FROM usage_events").one()
        rolled = conn.exec_driver_sql(
            "SELECT sum(events) FROM usage_rollups WHERE granularity = 'm' AND tag_key = ''").scalar()
        return int(events[0]), int(events[1] or 0), int(rolled or 0)

    return store.read_sync(read)


def test_replaying_events_already_stored_counts_none_twice(store: Store) -> None:
    events = [_event(n) for n in range(10)]
    assert len(store.write_sync(lambda conn: ingest(conn, events[:6]))) == 6
    # A replay overlapping what is stored: only the four new events are added, to rows and rollups.
    fresh = store.write_sync(lambda conn: ingest(conn, events))
    assert [e["request_id"] for e in fresh] == [e["request_id"] for e in events[6:]]
    assert store.write_sync(lambda conn: ingest(conn, events)) == []
    assert _totals(store) == (10, sum(e["input_tokens"] for e in events), 10)


def test_a_journal_replayed_twice_stores_each_event_once(tmp_path: Path, store: Store) -> None:
    directory = tmp_path / "metering"
    directory.mkdir()
    events = [_event(n) for n in range(25)]
    data = b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in events)
    for owner in ("4242-0badf00d", "4343-0badf00d"):  # the same events in two dead journals
        (directory / f"{owner}-000001.jsonl").write_bytes(data)
    stored = 0
    for orphan in claim_orphans(directory, own_owner="me"):
        batch = [orjson.loads(line) for line in orphan.lines()]
        stored += len(store.write_sync(lambda conn, b=batch: ingest(conn, b)))  # type: ignore[misc]
        orphan.done()
    assert stored == 25
    assert _totals(store) == (25, sum(e["input_tokens"] for e in events), 25)
    assert not os.listdir(directory)


# -- fsync = "interval" ------------------------------------------------------------------------------
def test_interval_mode_writes_before_append_returns_and_syncs_within_the_interval(tmp_path: Path) -> None:
    journal = Journal(tmp_path, fsync="interval", interval=0.01)
    seqs = [journal.append(_line(n)) for n in range(20)]
    assert seqs == [(n, None) for n in range(1, 21)]  # nothing to wait for
    (segment,) = _segments(tmp_path)
    # In the file already (a mapped segment is longer than its lines: zeros follow them).
    assert segment.read_bytes().rstrip(b"\0") == b"".join(_line(n) for n in range(20))
    deadline = time.monotonic() + 5
    while journal.synced < 20 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert journal.synced == 20 and journal.fsyncs >= 1
    journal.close()


def test_interval_mode_rolls_over_and_closes_full_segments_once_synced(tmp_path: Path) -> None:
    journal = Journal(tmp_path, fsync="interval", interval=0.01, segment_bytes=100)
    for n in range(30):
        journal.append(_line(n))
    assert len(_segments(tmp_path)) > 1
    assert b"".join(p.read_bytes().rstrip(b"\0") for p in _segments(tmp_path)) == b"".join(_line(n) for n in range(30))
    deadline = time.monotonic() + 5  # the syncer closes full segments once they are on disk
    while len(journal._segments) > 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(journal._segments) == 1
    journal.close()
    with pytest.raises(RuntimeError):
        journal.append(_line(31))


def test_interval_mode_lines_survive_kill_9_right_after_append(tmp_path: Path) -> None:
    # A child appends, reports, and is killed at once, long before its first sync (an hour away).
    script = (
        "import sys, os, orjson\n"
        "from pathlib import Path\n"
        "from outcrop.metering.journal import Journal\n"
        "j = Journal(Path(sys.argv[1]), fsync='interval', interval=3600)\n"
        "for n in range(1000):\n"
        "    j.append(orjson.dumps({'n': n}, option=orjson.OPT_APPEND_NEWLINE))\n"
        "print('appended', flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline() == b"appended\n"
    child.send_signal(signal.SIGKILL)
    child.wait()
    (orphan,) = claim_orphans(tmp_path, own_owner="me")
    assert [orjson.loads(line)["n"] for line in orphan.lines()] == list(range(1000))
    orphan.done()


def test_an_unknown_fsync_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync must be one of interval, always"):
        Journal(tmp_path, fsync="never")


def test_interval_mode_takes_a_line_longer_than_a_segment(tmp_path: Path) -> None:
    journal = Journal(tmp_path, fsync="interval", interval=0.01, segment_bytes=64)
    long = orjson.dumps({"text": "x" * 500}, option=orjson.OPT_APPEND_NEWLINE)
    lines = [_line(1), long, _line(2)]
    for line in lines:
        journal.append(line)
    assert b"".join(p.read_bytes().rstrip(b"\0") for p in _segments(tmp_path)) == b"".join(lines)
    journal.close()
    (orphan,) = claim_orphans(tmp_path, own_owner="me")  # closed, not stored: left for recovery, zeros and all
    assert orphan.lines() == [line.rstrip(b"\n") for line in lines]
    orphan.done()


def test_interval_mode_writes_lines_where_blocks_cannot_be_reserved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(fd: int, offset: int, length: int) -> None:
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", refuse)
    journal = Journal(tmp_path, fsync="interval", interval=0.01)
    for n in range(5):
        journal.append(_line(n))
    (segment,) = _segments(tmp_path)
    assert segment.read_bytes() == b"".join(_line(n) for n in range(5))  # no zeros: written line by line
    journal.close()


def test_close_is_not_lost_between_a_timed_out_wait_and_the_clear(tmp_path: Path) -> None:
    """The interval syncer took "closing" from its wake-up: a close() landing after a wait had timed out but
    before the event was cleared was lost, and close() then waited on the syncer forever (a test run hung on
    it at shutdown). Here the close lands exactly there, every time."""
    import threading

    journal = Journal(tmp_path, fsync="interval", interval=0.02)

    class CloseLandsBeforeClear(threading.Event):
        def clear(self) -> None:
            with journal._mutex:  # what close() does: mark closed, then wake the syncer
                journal._closed = True
            self.set()
            super().clear()

    journal._wake = CloseLandsBeforeClear()
    journal._flusher.join(timeout=5)
    assert not journal._flusher.is_alive(), "the syncer missed the close and would keep close() waiting"
    journal.close()
