"""The write paths: on SQLite a request's writes run on the event loop between a BEGIN and a COMMIT made on
a helper thread (``LoopWriter``); writes from threads go through ``GroupCommitWriter``. Both batch, isolate
one failing job from the others of its batch, run a ``Recheck`` after rolling its job back, and resolve a
job only after its COMMIT."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text

from outcrop.store.engine import Recheck, Store


@pytest.fixture
def store(tmp_path: Path) -> Any:
    store = Store(f"sqlite:///{tmp_path / 'o.db'}")
    store.migrate()
    store.write_sync(lambda c: c.execute(text("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")))
    yield store
    store.close()


def _rows(store: Store) -> dict[str, int]:
    return dict(store.read_sync(lambda c: c.execute(text("SELECT k, v FROM t")).all()))


def _insert(k: str, v: int = 1) -> Any:
    return lambda c: c.execute(text("INSERT INTO t VALUES (:k, :v)"), {"k": k, "v": v}).rowcount


def test_concurrent_writes_share_commits_and_each_waits_for_its_own(store: Store) -> None:
    assert store.loop_writer is not None
    commits = 0
    original = store.loop_writer._opened

    def counting(loop: Any, opening: Any) -> None:
        nonlocal commits
        commits += 1
        original(loop, opening)

    store.loop_writer._opened = counting  # type: ignore[method-assign]

    async def main() -> list[int]:
        return await asyncio.gather(*(store.write(_insert(f"k{i}")) for i in range(200)))

    assert asyncio.run(main()) == [1] * 200
    assert len(_rows(store)) == 200  # committed: another connection sees them
    assert commits < 200 / 4  # jobs that came in together shared a transaction


def test_a_failing_job_leaves_its_batch_untouched(store: Store) -> None:
    def boom(c: Connection) -> None:
        c.execute(text("INSERT INTO t VALUES ('half', 1)"))
        raise ValueError("no")

    async def main() -> list[Any]:
        return await asyncio.gather(store.write(_insert("a")), store.write(boom), store.write(_insert("b")),
                                    store.write(_insert("a")), return_exceptions=True)

    ok_a, failed, ok_b, duplicate = asyncio.run(main())
    assert (ok_a, ok_b) == (1, 1)
    assert isinstance(failed, ValueError)
    assert type(duplicate).__name__ == "IntegrityError"
    assert _rows(store) == {"a": 1, "b": 1}  # 'half' was rolled back with its job


def test_a_recheck_runs_after_its_job_is_rolled_back(store: Store) -> None:
    store.write_sync(_insert("taken", 7))

    def job(c: Connection) -> Any:
        c.execute(text("INSERT INTO t VALUES ('mine', 1)"))
        c.execute(text("INSERT INTO t VALUES ('taken', 1)"))  # fails: the recheck answers instead
        return "unreachable"

    def failing(c: Connection) -> Any:
        try:
            return job(c)
        except Exception:
            raise Recheck(lambda c2: c2.execute(text("SELECT v FROM t WHERE k = 'taken'")).scalar()) from None

    assert asyncio.run(store.write(failing)) == 7
    assert store.write_sync(failing) == 7  # the thread's writer does the same
    assert _rows(store) == {"taken": 7}  # 'mine' went with the rolled-back attempt


def test_writes_from_the_loop_and_from_threads_interleave(store: Store) -> None:
    def from_thread() -> None:
        for i in range(50):
            store.write_sync(_insert(f"thread{i}"))

    async def main() -> None:
        thread = threading.Thread(target=from_thread)
        thread.start()
        await asyncio.gather(*(store.write(_insert(f"loop{i}")) for i in range(50)))
        await asyncio.to_thread(thread.join)

    asyncio.run(main())
    assert len(_rows(store)) == 100


def test_a_commit_that_fails_fails_its_batch_and_the_writer_recovers(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = store.loop_writer
    assert writer is not None
    original = writer._begin
    fail = [True]

    def begin_then_break() -> Any:
        transaction = original()
        if fail[0]:
            fail[0] = False

            def broken_commit() -> None:
                transaction.rollback()
                raise OSError("disk full")

            return type("T", (), {"commit": staticmethod(broken_commit)})()
        return transaction

    monkeypatch.setattr(writer, "_begin", begin_then_break)
    with pytest.raises(OSError, match="disk full"):
        asyncio.run(store.write(_insert("lost")))
    assert asyncio.run(store.write(_insert("next"))) == 1
    assert _rows(store) == {"next": 1}


def test_a_closed_writer_refuses_writes(store: Store) -> None:
    assert store.loop_writer is not None
    store.loop_writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(store.write(_insert("late")))


def test_closing_rolls_back_a_transaction_the_loop_never_finished_and_frees_the_lock(store: Store) -> None:
    # The BEGIN completes on the helper thread, but the loop stops before it runs the jobs and commits.
    writer = store.loop_writer
    assert writer is not None

    async def begin_only() -> None:
        loop = asyncio.get_running_loop()
        writer._conn = None
        transaction = await loop.run_in_executor(writer._pool, writer._begin)
        assert transaction.is_active

    asyncio.run(begin_only())
    path = store.url.split("///", 1)[1]
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        probe.execute("BEGIN IMMEDIATE")  # held by the transaction the loop never finished
    writer.close()  # what Outcrop.stop does first at shutdown
    probe.execute("BEGIN IMMEDIATE")  # free now, without waiting
    probe.execute("ROLLBACK")
    probe.close()
    assert store.write_sync(_insert("after")) == 1
    writer.close()  # twice is fine
