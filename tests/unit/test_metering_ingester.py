"""The ingester's side of the journal: following segments while they are written, publishing progress,
resuming from it, and the ingester process's protocol (wake on a byte, finish on end of file)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from outcrop.config import ConfigError, load_config
from outcrop.metering.ingester import DATABASE_ENV, NICENESS, Ingester, recover_orphans
from outcrop.metering.journal import Journal, Progress, Tail, claim_orphans, segment_path
from outcrop.store.engine import Store
from tests.unit.test_metering_journal import _event


def _line(n: int) -> bytes:
    return orjson.dumps(_event(n), option=orjson.OPT_APPEND_NEWLINE)


def _ids(lines: list[bytes]) -> list[str]:
    return [orjson.loads(line)["request_id"] for line in lines]


def _stored(store: Store) -> list[str]:
    return store.read_sync(lambda conn: [r[0] for r in conn.exec_driver_sql(
        "SELECT request_id FROM usage_events ORDER BY request_id").all()])


@pytest.mark.parametrize("fsync", ["interval", "always"])
def test_a_tail_reads_each_line_once_in_order_while_the_journal_grows_and_rolls_over(
    tmp_path: Path, fsync: str
) -> None:
    journal = Journal(tmp_path, fsync=fsync, interval=0.01, segment_bytes=2000)
    tail = Tail(tmp_path, journal.owner, None)
    read: list[bytes] = []

    async def write_and_follow() -> None:
        for n in range(120):
            _, durable = journal.append(_line(n))
            if durable is not None:
                await durable  # "always": the flusher writes in the background
            if n % 7 == 0:
                read.extend(tail.read(1000))

    asyncio.run(write_and_follow())
    read += tail.read(1000)
    assert len(list(tmp_path.glob("*.jsonl"))) > 3
    assert _ids(read) == [f"req-{n:04d}" for n in range(120)]
    assert tail.seq == journal.written == 120
    assert tail.read(1000) == []
    journal.close()


def test_a_line_not_yet_copied_whole_is_waited_for(tmp_path: Path) -> None:
    whole, torn = _line(1), bytearray(_line(2))
    torn[10:30] = bytes(20)  # copied out of order: its newline is there, some bytes are not yet
    path = segment_path(tmp_path, "4242-0badf00d", 1)
    path.write_bytes(whole + bytes(torn) + bytes(100))
    tail = Tail(tmp_path, "4242-0badf00d", None)
    assert _ids(tail.read(10)) == ["req-0001"]
    assert tail.read(10) == []
    path.write_bytes(whole + _line(2) + bytes(100))  # the copy completes
    assert _ids(tail.read(10)) == ["req-0002"]
    assert tail.seq == 2


def test_a_segment_is_left_only_once_the_next_one_exists(tmp_path: Path) -> None:
    owner = "4242-0badf00d"
    segment_path(tmp_path, owner, 1).write_bytes(_line(1))
    tail = Tail(tmp_path, owner, None)
    assert _ids(tail.read(10)) == ["req-0001"]
    segment_path(tmp_path, owner, 1).write_bytes(_line(1) + _line(2))  # still being written
    segment_path(tmp_path, owner, 2).write_bytes(_line(3))
    assert _ids(tail.read(10)) == ["req-0002", "req-0003"]
    tail.commit()
    assert not segment_path(tmp_path, owner, 1).exists()  # read to its end and stored: deleted
    assert segment_path(tmp_path, owner, 2).exists()


def test_progress_is_published_on_commit_and_a_new_tail_resumes_from_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path, fsync="interval", segment_bytes=1500)
    for n in range(40):
        journal.append(_line(n))
    progress = Progress(tmp_path / f"{journal.owner}.progress")
    first = Tail(tmp_path, journal.owner, progress)
    assert len(first.read(10)) >= 10
    assert progress.seq == 0  # nothing published before the commit
    first.commit()
    assert progress.seq == first.seq
    resumed = Tail(tmp_path, journal.owner, Progress(tmp_path / f"{journal.owner}.progress"))
    assert _ids(resumed.read(1000)) == [f"req-{n:04d}" for n in range(first.seq, 40)]
    journal.close()


def test_a_damaged_progress_record_means_start_again(tmp_path: Path) -> None:
    progress = Progress(tmp_path / "x.progress")
    progress.write(7, 3, 120)
    assert progress.read() == (7, 3, 120)
    with open(tmp_path / "x.progress", "r+b") as f:
        f.seek(8)
        f.write(b"\x09")
    assert Progress(tmp_path / "x.progress").read() == (0, 1, 0)


def test_an_ingester_stores_the_journal_and_a_successor_counts_nothing_twice(tmp_path: Path, store: Store) -> None:
    directory = tmp_path / "metering"
    journal = Journal(directory, fsync="interval", segment_bytes=3000)
    for n in range(30):
        journal.append(_line(n))
    first = Ingester(store, directory, journal.owner)
    assert first.step() == 30
    for n in range(30, 50):
        journal.append(_line(n))
    # A second ingester (the first one died before publishing anything more) resumes from the progress.
    second = Ingester(store, directory, journal.owner)
    assert second.step() == 20
    journal.close(keep_lock=True)
    assert second.finish()
    journal.unlock()
    assert _stored(store) == [f"req-{n:04d}" for n in range(50)]
    assert not list(directory.iterdir())  # segments, progress and lock: all gone


def test_orphans_resume_from_their_progress_and_are_deleted(tmp_path: Path, store: Store) -> None:
    directory = tmp_path / "metering"
    journal = Journal(directory, fsync="interval")
    for n in range(10):
        journal.append(_line(n))
    Ingester(store, directory, journal.owner).step()
    for n in range(10, 15):
        journal.append(_line(n))
    journal.close()  # the process is gone without storing the last five
    assert recover_orphans(store, directory, own_owner="me") == 5
    assert len(_stored(store)) == 15
    assert not list(directory.iterdir())
    assert claim_orphans(directory, own_owner="me") == []


def _spawn(directory: Path, owner: str, lock_fd: int, database_url: str) -> tuple[subprocess.Popen[bytes], int]:
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "outcrop.metering.ingester", str(directory), owner, str(lock_fd)],
        stdin=read_end, pass_fds=(lock_fd,), env={**os.environ, DATABASE_ENV: database_url},
    )
    os.close(read_end)
    return proc, write_end


def _until(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_ingest_process_wakes_on_a_byte_holds_the_lock_and_finishes_on_end_of_file(
    tmp_path: Path, store: Store
) -> None:
    directory = tmp_path / "metering"
    journal = Journal(directory, fsync="interval")
    progress = Progress(directory / f"{journal.owner}.progress")
    proc, pipe = _spawn(directory, journal.owner, journal.lock_fd, store.url)
    for n in range(25):
        journal.append(_line(n))
    os.write(pipe, b"w")
    _until(lambda: progress.seq == 25)
    # It runs below its server's priority (nice values stop at 19).
    assert os.getpriority(os.PRIO_PROCESS, proc.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + NICENESS)
    assert len(_stored(store)) == 25
    journal.close()  # this process lets go of the lock; the ingester still holds it
    assert claim_orphans(directory, own_owner="me") == []
    os.close(pipe)  # end of file: the writer is done
    assert proc.wait(30) == 0
    assert not list(directory.iterdir())


def test_the_ingest_process_stores_the_rest_when_its_writer_dies(tmp_path: Path, store: Store) -> None:
    directory = tmp_path / "metering"
    directory.mkdir()
    # A writer process that journals, starts its ingester, reports, and is killed.
    script = (
        "import os, sys, subprocess, orjson\n"
        "from pathlib import Path\n"
        "from outcrop.metering.journal import Journal\n"
        "from tests.unit.test_metering_ingester import _line, _spawn\n"
        "j = Journal(Path(sys.argv[1]), fsync='interval', interval=3600)\n"
        "proc, pipe = _spawn(Path(sys.argv[1]), j.owner, j.lock_fd, sys.argv[2])\n"
        "for n in range(200):\n"
        "    j.append(_line(n))\n"
        "print(proc.pid, flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script, str(directory), store.url], stdout=subprocess.PIPE,
                              cwd=Path(__file__).parents[2])
    assert writer.stdout is not None
    ingester_pid = int(writer.stdout.readline())
    writer.kill()
    writer.wait()
    _until(lambda: not Path(f"/proc/{ingester_pid}").exists() or _zombie(ingester_pid))
    assert len(_stored(store)) == 200
    assert not list(directory.iterdir())


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_metering_ingest_is_a_checked_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "outcrop.toml"
    path.write_text('metering_ingest = "thread"\n')
    assert load_config(path).metering_ingest == "thread"
    assert load_config().metering_ingest == "process"
    monkeypatch.setenv("OUTCROP_METERING_INGEST", "coroutine")
    with pytest.raises(ConfigError, match="metering_ingest must be 'process' or 'thread', not 'coroutine'"):
        load_config()


def test_a_stop_of_the_process_group_while_the_ingester_starts_does_not_kill_it(tmp_path: Path, store: Store) -> None:
    from outcrop.metering.meter import _IngestProcess

    directory = tmp_path / "metering"
    journal = Journal(directory, fsync="interval")
    for n in range(5):
        journal.append(_line(n))
    ingest = _IngestProcess(store.url, directory, journal.owner, journal.lock_fd)
    ingest.start()
    assert ingest._proc is not None
    first = ingest._proc
    for signum in (signal.SIGTERM, signal.SIGINT):  # at once: the child is still importing
        os.kill(first.pid, signum)
    time.sleep(1.0)
    assert ingest._proc is first and first.poll() is None  # neither killed nor replaced
    journal.close()
    assert ingest.finish()
    assert ingest._proc.returncode == 0
    assert len(_stored(store)) == 5
    assert not list(directory.iterdir())


def test_a_database_down_when_the_writer_finishes_is_waited_for_only_so_long(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    import outcrop.metering.ingester as ingester_module

    monkeypatch.setattr(ingester_module, "FINAL_PATIENCE", 0.3)
    monkeypatch.setattr(ingester_module, "RETRY_SECONDS", (0.05,))
    directory = tmp_path / "metering"
    journal = Journal(directory, fsync="interval")
    for n in range(5):
        journal.append(_line(n))

    def down(fn: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("the database is down"))

    monkeypatch.setattr(store, "write_sync", down)
    signals = ingester_module.Signals()
    ingester = Ingester(store, directory, journal.owner, signals)
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(ingester.run()))
    thread.start()
    time.sleep(0.5)  # retrying, with no end while the writer lives
    assert thread.is_alive()
    journal.close()
    signals.finish()
    thread.join(10)
    assert result == [False]  # gave up: the journal stays for the next process to recover
    assert len(list(directory.glob("*.jsonl"))) == 1
    (orphan,) = claim_orphans(directory, own_owner="me")
    assert len(orphan.lines()) == 5
    orphan.done()


def test_a_journal_line_is_the_events_values_and_lines_of_earlier_versions_still_read(caplog) -> None:
    """The meter journals an event as the JSON array of its values in ``FIELDS`` order; the ingester reads it
    back as the event, each value under its name. A line journaled by an earlier version (an object) reads
    as it is; an array of the wrong length is skipped with a warning, never stored wrong."""
    from outcrop.control.catalog import Catalog
    from outcrop.metering.events import FIELDS, event_values
    from outcrop.metering.ingester import parse
    from outcrop.metering.prices import Prices
    from outcrop.providers.messages import Usage
    from outcrop.runtime.invoke import InvocationRecord

    prices = Prices.load(Catalog.load())
    haiku = "anthropic.claude-3-haiku-20240307-v1:0"
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abcdefghij12"
    usage = Usage(12, 34, 5, 6)
    record = InvocationRecord(
        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "123456789012", "us-east-1", "Converse", haiku, arn,
        served_region="us-west-2", usage=usage, latency_ms=21, first_token_ms=7, requested_model_id=arn,
        tags={"team": "red"}, metadata={"tenant": "acme"}, outcome="ThrottlingException", error_status=429,
    )
    now = 1_767_225_600.0
    values = event_values(record, prices, now)
    line = orjson.dumps(values, option=orjson.OPT_APPEND_NEWLINE)
    assert line.startswith(b"[")
    earlier = orjson.dumps({**_event(1), "request_id": "earlier"}, option=orjson.OPT_APPEND_NEWLINE)
    short = orjson.dumps(list(values)[:-1], option=orjson.OPT_APPEND_NEWLINE)
    events = parse([line, earlier, short], "owner")
    event = events[0]
    assert set(event) == set(FIELDS)
    assert abs(event.pop("time_us") - int(now * 1_000_000)) < 1_000_000  # the start, from a monotonic clock
    cost = prices.price(haiku, "us-east-1", int(now * 1_000_000)).cost(usage)
    assert cost > 0
    assert event == {
        "request_id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "account": "123456789012",
        "source_region": "us-east-1", "inference_region": "us-west-2", "operation": "Converse", "model_id": arn,
        "model_dim": "abcdefghij12", "profile_arn": arn, "profile_id": "abcdefghij12", "profile_type": "APPLICATION",
        "foundation_model": haiku, "input_tokens": 12, "output_tokens": 34, "cache_read_tokens": 5,
        "cache_write_tokens": 6, "latency_ms": 21, "ttft_ms": 7, "outcome": "throttled",
        "error_code": "ThrottlingException", "cost_pusd": cost, "identity": "arn:aws:iam::123456789012:root",
        "request_metadata": {"tenant": "acme"}, "tags": {"team": "red"},
    }
    assert events[1]["request_id"] == "earlier" and len(events) == 2
    assert "skipping a line of 23 values (not 24)" in caplog.text


def _tagged(n: int, tags: dict[str, str]) -> bytes:
    return orjson.dumps({**_event(n), "tags": tags}, option=orjson.OPT_APPEND_NEWLINE)


def test_storing_spend_against_a_budget_is_announced_once_per_batch(tmp_path: Path, store: Store) -> None:
    """The workers' caches of stored spend are dropped on it (``generations.SPEND``); spend of profiles
    without a budget, the common case, costs them nothing."""
    directory = tmp_path / "metering"
    journal = Journal(directory, fsync="interval")
    announced: list[int] = []
    ingester = Ingester(store, directory, journal.owner, budgeted=lambda: announced.append(1))
    for n in range(5):
        journal.append(_tagged(n, {"team": "red"}))
    assert ingester.step() == 5
    assert announced == []
    for n in range(5, 10):
        journal.append(_tagged(n, {"team": "red", "outcrop:budget-usd-daily": "5"} if n == 7 else {}))
    assert ingester.step() == 5
    assert announced == [1]
    # A dead process's journal, recovered: its budgeted spend is announced too.
    journal.close()
    other = Journal(directory, fsync="interval")
    other.append(_tagged(10, {"outcrop:budget-tokens-monthly": "100"}))
    other.close()
    assert recover_orphans(store, directory, own_owner="me", budgeted=lambda: announced.append(2)) == 1
    assert announced == [1, 2]


def test_spend_is_announced_once_its_progress_is_published(tmp_path: Path, store: Store) -> None:
    """The announcement drops the workers' cached stored spend. The worker that wrote the events reads
    its spend again as stored plus its own pending spend, which it settles from the published progress:
    announced before the progress, the events count twice (a budget refuses early)."""
    from outcrop.generations import SPEND, Generations, Watch
    from outcrop.metering.budgets import DAY_US, Spend

    directory = tmp_path / "metering"
    journal = Journal(directory, fsync="interval")
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"
    event = {**_event(1), "profile_arn": arn, "profile_id": "abc123", "profile_type": "APPLICATION",
             "tags": {"outcrop:budget-tokens-daily": "100"}}
    seq, _ = journal.append(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
    spent_here = (event["time_us"], event["cost_pusd"], event["input_tokens"] + event["output_tokens"])
    progress = Progress(directory / f"{journal.owner}.progress")
    unsettled = [seq]
    generations = Generations()

    def settle() -> None:  # as the meter does
        if unsettled and unsettled[0] <= progress.seq:
            unsettled.pop()
            spend.add_pending(event["account"], arn, *spent_here, sign=-1)

    spend = Spend(store, ttl=3600, settle=settle, not_stored=lambda account, profile: [spent_here],
                  stored=Watch(generations, SPEND))
    day = event["time_us"] - event["time_us"] % DAY_US

    def check() -> tuple[int, int]:
        return asyncio.run(spend.spent(event["account"], arn, day, day + DAY_US))

    assert check() == spent_here[1:]  # pending: not stored yet
    seen: list[tuple[int, int]] = []

    def announced() -> None:
        generations.bump(SPEND)
        seen.append(check())  # the worker's next budget check, as soon as the announcement is out

    assert Ingester(store, directory, journal.owner, budgeted=announced).step() == 1
    assert seen == [spent_here[1:]]  # not twice
    assert check() == spent_here[1:]


def test_an_ingest_process_that_cannot_be_started_again_leaves_no_stale_descriptor_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its pipe was closed before the new one was made: when that failed (``EMFILE`` under load, …), the
    closed number stayed in use, and ``wake`` wrote into whatever file the process opened next under it
    (a journal segment, the SQLite database, a client's socket), and ``finish`` closed that file."""
    from outcrop.metering.meter import _IngestProcess

    lock_fd = os.open(tmp_path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    ingest = _IngestProcess("sqlite://", tmp_path, "me", lock_fd)
    ingest._command = [sys.executable, "-c", "import sys; sys.stdin.buffer.read()"]
    ingest.start()
    pipe = ingest._pipe
    failed = threading.Event()
    real_pipe = os.pipe

    def no_more() -> tuple[int, int]:
        if threading.current_thread().name != "outcrop-ingest-watch":
            return real_pipe()
        failed.set()
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(os, "pipe", no_more)
    assert ingest._proc is not None
    ingest._proc.kill()
    assert failed.wait(10)
    time.sleep(0.2)
    monkeypatch.setattr(os, "pipe", real_pipe)
    opened: list[int] = []
    while not opened or opened[-1] != pipe:  # the process opens files; one gets the number the pipe had
        opened.append(os.open(tmp_path / f"file-{len(opened)}", os.O_RDWR | os.O_CREAT, 0o600))
        assert len(opened) < 50
    victim = tmp_path / f"file-{len(opened) - 1}"
    try:
        ingest.wake()
        assert victim.read_bytes() == b""  # not written into …
        ingest.finish()
        os.fstat(opened[-1])  # … nor closed
    finally:
        for fd in opened:
            with contextlib.suppress(OSError):
                os.close(fd)
        os.close(lock_fd)


def test_a_journal_line_that_is_json_but_no_event_is_skipped_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    """A damaged line that still parses (a number, a string, null) crashed the ingester on every restart."""
    from outcrop.metering.ingester import parse

    events = parse([b"42\n", b'"text"\n', b"null\n", _line(1)], "owner")
    assert [e["request_id"] for e in events] == ["req-0001"]
    assert caplog.text.count("a line that is no event") == 3
