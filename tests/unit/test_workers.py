"""``outcrop.workers``: slots, the limits the workers of one server share, and the sums of their state.

Two ``Slot``s in one process stand for two workers: ``flock`` locks belong to open files, so the second
open of a lock file is refused as another process's would be. The race test uses real processes.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

from outcrop.routing.limits import Capacity, SharedCapacity
from outcrop.workers import MAX_WORKERS, SharedLimits, Slot, merge_metrics, merge_routing


def _worker(directory: Path) -> tuple[Slot, SharedLimits]:
    slot = Slot(directory)
    return slot, SharedLimits(directory / "limits", slot)


def _capacity(limits: SharedLimits, max_concurrency: int = 0, rpm: int = 0, tpm: int = 0) -> SharedCapacity:
    cell = limits.cell("us-east-1", "m", "openai-0", rpm, tpm)
    assert cell is not None
    return SharedCapacity(max_concurrency, rpm, tpm, cell)


def test_each_worker_takes_the_lowest_free_slot_and_a_dead_ones_is_taken_again(tmp_path):
    first, second = Slot(tmp_path), Slot(tmp_path)
    assert (first.number, second.number) == (0, 1)
    assert first.others() == [1] and second.others() == [0]
    first.close()  # the worker died: the kernel dropped its lock
    assert not second.alive(0) and second.others() == []
    third = Slot(tmp_path)
    assert third.number == 0
    assert second.others() == [0]
    for slot in (second, third):
        slot.close()


def test_concurrency_is_counted_over_every_worker(tmp_path):
    (_, a), (_, b) = _worker(tmp_path), _worker(tmp_path)
    in_a, in_b = _capacity(a, max_concurrency=2), _capacity(b, max_concurrency=2)
    first = in_a.try_acquire(1)
    second = in_b.try_acquire(1)
    assert first is not None and second is not None
    assert in_a.try_acquire(1) is None and in_b.try_acquire(1) is None  # each worker alone would admit 2
    assert in_a.retry_after(1) is not None  # only another worker can make room: the router looks again
    assert in_a.outstanding == 1 and in_b.outstanding == 1 and in_a.in_use() == 2
    second.release()
    assert in_a.try_acquire(1) is not None
    # The same deployment seen a second time in one worker is the same cell.
    assert a.cell("us-east-1", "m", "openai-0", 0, 0) is in_a.cell


def test_a_dead_workers_requests_stop_counting_when_a_worker_starts(tmp_path):
    (_, a), (b_slot, b) = _worker(tmp_path), _worker(tmp_path)
    in_a, in_b = _capacity(a, max_concurrency=1), _capacity(b, max_concurrency=1)
    assert in_b.try_acquire(1) is not None
    assert in_a.try_acquire(1) is None
    b_slot.close()  # killed with its request in flight: the lease is never released
    assert in_a.try_acquire(1) is None  # nothing noticed yet
    c_slot, _ = _worker(tmp_path)  # its replacement takes the slot and clears what the dead one held
    assert c_slot.number == 1
    assert in_a.try_acquire(1) is not None


def test_buckets_are_one_for_the_server_and_trued_up(tmp_path):
    (_, a), (_, b) = _worker(tmp_path), _worker(tmp_path)
    in_a, in_b = _capacity(a, rpm=3, tpm=1000), _capacity(b, rpm=3, tpm=1000)
    leases = [in_a.try_acquire(100), in_b.try_acquire(100), in_a.try_acquire(100)]
    assert all(leases)
    assert in_b.try_acquire(100) is None  # the fourth request of the minute, whichever worker takes it
    assert 0 < in_b.retry_after(100) <= 20  # a request's worth refills in 60/3 s
    assert in_b.tokens is not None and 690 < in_b.tokens.available() <= 710
    leases[0].release(used_tokens=400)  # used 300 more than estimated: both workers see the debt
    assert 390 < in_b.tokens.available() <= 410


def test_a_fresh_cell_starts_full_and_a_later_worker_keeps_its_level(tmp_path):
    (_, a), (_, b) = _worker(tmp_path), _worker(tmp_path)
    in_a = _capacity(a, tpm=600)
    assert in_a.tokens is not None and in_a.tokens.available() == 600
    lease = in_a.try_acquire(500)
    assert lease is not None
    in_b = _capacity(b, tpm=600)  # made after: finds the cell, does not refill it
    assert in_b.tokens is not None and in_b.tokens.available() < 110


def _take_many(directory: str, tries: int, out: multiprocessing.Queue) -> None:
    slot = Slot(Path(directory))
    capacity = _capacity(SharedLimits(Path(directory) / "limits", slot), rpm=200)
    out.put(sum(capacity.try_acquire(1) is not None for _ in range(tries)))


def test_workers_racing_for_the_last_room_never_take_more_than_there_is(tmp_path):
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    started = time.monotonic()
    racers = [context.Process(target=_take_many, args=(str(tmp_path), 400, out)) for _ in range(4)]
    for r in racers:
        r.start()
    admitted = sum(out.get(timeout=60) for _ in racers)
    for r in racers:
        r.join(timeout=60)
    refilled = (time.monotonic() - started) * 200 / 60
    # 200 at once, and what refilled while they ran; unlocked, lost updates would admit far more.
    assert 200 <= admitted <= 200 + refilled + 1


def test_a_full_file_leaves_a_deployment_to_each_worker(tmp_path, monkeypatch):
    import outcrop.workers as workers

    monkeypatch.setattr(workers, "CELLS", 2)
    slot = Slot(tmp_path)
    limits = SharedLimits(tmp_path / "limits", slot)
    assert limits.cell("r", "a", "d", 1, 0) is not None
    assert limits.cell("r", "b", "d", 1, 0) is not None
    assert limits.cell("r", "c", "d", 1, 0) is None


def test_slots_are_bounded(tmp_path, monkeypatch):
    import outcrop.workers as workers

    monkeypatch.setattr(workers, "MAX_WORKERS", 2)
    Slot(tmp_path), Slot(tmp_path)
    try:
        Slot(tmp_path)
    except RuntimeError as e:
        assert "more than 2 workers" in str(e)
    else:
        raise AssertionError("a third slot was given out")
    assert MAX_WORKERS == 64


def test_the_last_free_slot_is_taken_even_while_another_worker_probes_it(tmp_path, monkeypatch):
    """A probe (``alive``) holds a dead slot's lock for a moment; a worker starting then must not find
    every slot taken and fail to start."""
    import fcntl
    import os
    import threading

    import outcrop.workers as workers

    monkeypatch.setattr(workers, "MAX_WORKERS", 2)
    first = Slot(tmp_path)
    dead = Slot(tmp_path)
    dead.close()
    probe = os.open(tmp_path / "1.lock", os.O_RDWR)
    fcntl.flock(probe, fcntl.LOCK_SH)
    threading.Timer(0.02, os.close, (probe,)).start()
    assert Slot(tmp_path).number == 1
    first.close()


def test_unlimited_and_single_worker_capacity_never_touch_a_file():
    capacity = Capacity(2)
    assert capacity.try_acquire(1) is not None and capacity.retry_after(1) is not None
    assert capacity.try_acquire(1) is not None and capacity.retry_after(1) is None  # its own release wakes


def _status(breaker: str, outstanding: int, attempts: dict[str, int], **extra: object) -> dict[str, object]:
    deployment = {
        "region": "us-east-1", "model": "m", "deployment": "builtin", "backend": "builtin", "breaker": breaker,
        "consecutiveFailures": 1 if breaker == "open" else 0, "timesOpened": int(breaker == "open"),
        "outstanding": outstanding, "maxConcurrency": 4, "rpm": 0, "tpm": 0, "attempts": attempts, **extra,
    }
    return {"strategy": "source-first", "failovers": 1, "rejections": {"capacity": 2}, "waiting": 0,
            "deployments": [deployment]}


def test_routing_status_of_several_workers_is_summed_with_the_worst_breaker():
    merged = merge_routing([
        _status("closed", 1, {"success": 3}),
        _status("open", 2, {"success": 1, "failure": 5}, probeInMs=900),
    ])
    assert merged["workers"] == 2 and merged["failovers"] == 2 and merged["rejections"] == {"capacity": 4}
    (d,) = merged["deployments"]
    assert d["breaker"] == "open" and d["breakersOpen"] == 1 and d["timesOpened"] == 1
    assert d["outstanding"] == 3 and d["attempts"] == {"failure": 5, "success": 4} and d["probeInMs"] == 900
    alone = merge_routing([_status("closed", 0, {})])
    assert alone["workers"] == 1 and alone["deployments"][0]["breakersOpen"] == 0


def test_metrics_of_several_workers_are_summed_but_states_and_creation_times():
    one = [
        ("outcrop_invocations", "counter", "Invocations", [("outcrop_invocations_total", {"model_id": "a"}, 2.0)]),
        ("outcrop_routing_breaker_state", "gauge", "Breaker", [("outcrop_routing_breaker_state", {"d": "x"}, 0.0)]),
        ("restarts", "counter", "R", [("restarts_total", {}, 1.0), ("restarts_created", {}, 50.0)]),
    ]
    two = [
        ("outcrop_invocations", "counter", "Invocations", [
            ("outcrop_invocations_total", {"model_id": "a"}, 3.0),
            ("outcrop_invocations_total", {"model_id": "b"}, 1.0),
        ]),
        ("outcrop_routing_breaker_state", "gauge", "Breaker", [("outcrop_routing_breaker_state", {"d": "x"}, 2.0)]),
        ("restarts", "counter", "R", [("restarts_total", {}, 0.0), ("restarts_created", {}, 40.0)]),
    ]
    merged = {name: {(s, tuple(sorted(labels.items()))): v for s, labels, v in samples}
              for name, _, _, samples in merge_metrics([one, two])}
    assert merged["outcrop_invocations"] == {
        ("outcrop_invocations_total", (("model_id", "a"),)): 5.0,
        ("outcrop_invocations_total", (("model_id", "b"),)): 1.0,
    }
    assert merged["outcrop_routing_breaker_state"] == {("outcrop_routing_breaker_state", (("d", "x"),)): 2.0}
    assert merged["restarts"] == {("restarts_total", ()): 1.0, ("restarts_created", ()): 40.0}


def test_a_scrape_sums_the_workers_that_answer_and_never_an_earlier_servers_state(tmp_path):
    import asyncio

    from outcrop.generations import Generations
    from outcrop.workers import Snapshots

    generations = Generations()
    first, second = Slot(tmp_path), Slot(tmp_path)
    (tmp_path / "1.json").write_bytes(b'{"generation": 99, "state": {"from": "an earlier server"}}')
    asking = Snapshots(first, generations, lambda: {"from": "worker 0"})
    answering = Snapshots(second, generations, lambda: {"from": "worker 1"})
    assert not (tmp_path / "1.json").exists()

    async def scrape() -> list:
        answering.start()
        try:
            return (await asking.gather())[0]
        finally:
            await answering.stop()

    assert asyncio.run(scrape()) == {1: {"from": "worker 1"}}


def test_a_bucket_written_before_a_reboot_is_full_again(tmp_path):
    (_, a) = _worker(tmp_path)
    in_a = _capacity(a, rpm=60)
    assert in_a.try_acquire(1) is not None
    in_a.cell.set_bucket(0, 0.5, time.monotonic() + 86_400)  # the last boot's clock was further on
    assert in_a.requests is not None and in_a.requests.available() == 60
    assert in_a.try_acquire(1) is not None


def test_two_scrapes_at_once_on_two_workers_each_get_the_others_fresh_state(tmp_path):
    import asyncio

    from outcrop.generations import Generations
    from outcrop.workers import Snapshots

    generations = Generations(tmp_path / "generations")
    slots = [Slot(tmp_path / "w"), Slot(tmp_path / "w")]
    states = [{"n": 0}, {"n": 1}]
    snapshots = [
        Snapshots(slot, generations, lambda i=i: dict(states[i]))
        for i, slot in enumerate(slots)
    ]

    async def both() -> list:
        for s in snapshots:
            s.start()
        try:
            await asyncio.sleep(0.1)  # each has answered the counter as it was
            states[0]["n"], states[1]["n"] = 10, 11
            started = time.monotonic()
            got = await asyncio.gather(snapshots[0].gather(), snapshots[1].gather())
            return [[states for states, _ in got], time.monotonic() - started]
        finally:
            for s in snapshots:
                await s.stop()

    (first, second), took = asyncio.run(both())
    assert first == {1: {"n": 11}} and second == {0: {"n": 10}}
    assert took < 0.5  # neither waited out the other (1 s)


def test_a_dead_workers_counts_clear_even_when_its_slot_goes_to_no_one(tmp_path):
    (_, a), (x_slot, _), (b_slot, b) = _worker(tmp_path), _worker(tmp_path), _worker(tmp_path)
    in_a, in_b = _capacity(a, max_concurrency=1), _capacity(b, max_concurrency=1)
    assert in_b.try_acquire(1) is not None  # slot 2
    x_slot.close()  # slot 1 ends cleanly
    b_slot.close()  # slot 2 dies holding its request
    d_slot, _ = _worker(tmp_path)
    assert d_slot.number == 1  # the lowest free: not the dead worker's
    assert in_a.try_acquire(1) is not None


def _counter(value: float, gauge: float) -> list:
    return [
        ("outcrop_invocations", "counter", "I", [("outcrop_invocations_total", {"m": "a"}, value)]),
        ("outcrop_routing_outstanding_requests", "gauge", "O", [("outcrop_routing_outstanding_requests", {}, gauge)]),
    ]


def _routing(attempts: int, breaker: str = "closed", outstanding: int = 0, deployment: str = "d0") -> dict:
    return {
        "strategy": "latency", "failovers": attempts, "rejections": {"throttled": attempts}, "waiting": outstanding,
        "deployments": [{"region": "us-east-1", "model": "m", "deployment": deployment, "breaker": breaker,
                         "consecutiveFailures": 0, "timesOpened": attempts, "outstanding": outstanding,
                         "attempts": {"success": attempts}}],
    }


def test_the_counts_of_a_dead_worker_stay_in_the_sums_and_are_counted_once(tmp_path):
    from outcrop.generations import SNAPSHOT, Generations
    from outcrop.workers import Snapshots

    generations = Generations()

    def snapshots(slot: Slot, metrics: list, routing: dict) -> Snapshots:
        return Snapshots(slot, generations, lambda: {"metrics": metrics, "routing": routing})

    first, second = Slot(tmp_path), Slot(tmp_path)
    asking = snapshots(first, _counter(1, 0), _routing(1))
    dying = snapshots(second, _counter(5, 3), _routing(5, breaker="open", outstanding=3, deployment="only-here"))
    generations.bump(SNAPSHOT)
    dying.answer()  # its last answer to a scrape: 5 invocations, 3 in progress
    second.close()  # killed

    def totals(found: list) -> dict:
        merged = merge_metrics(r["metrics"] for r in found)
        return {name: sum(v for _, _, v in samples) for name, _, _, samples in merged}

    def routing(found: list) -> dict:
        return merge_routing([_routing(1)], [r["routing"] for r in found])

    def check(found: list) -> None:
        assert totals(found) == {"outcrop_invocations": 5}
        merged = routing(found)
        assert (merged["failovers"], merged["rejections"], merged["waiting"], merged["workers"]) == (
            6, {"throttled": 6}, 0, 1)
        by_name = {d["deployment"]: d for d in merged["deployments"]}
        assert by_name["d0"]["attempts"] == {"success": 1}
        # Only the dead worker had used it: its counts stay, its breaker and requests in progress do not.
        gone = by_name["only-here"]
        assert (gone["attempts"], gone["timesOpened"], gone["breaker"], gone["outstanding"], gone["breakersOpen"]) == (
            {"success": 5}, 5, "closed", 0, 0)

    # Dead, not yet replaced: its counts are still there, its gauges are not.
    check(asking.retired(counted=[]))
    replacement = Slot(tmp_path)
    assert replacement.number == 1
    snapshots(replacement, _counter(0, 0), _routing(0))  # folds the dead worker's counts into retired.json
    assert not (tmp_path / "1.json").exists()
    check(asking.retired(counted=[1]))
    check(asking.retired(counted=[]))  # once, not twice

    # A second death in the same slot adds to what was folded.
    generations.bump(SNAPSHOT)
    again = snapshots(replacement, _counter(2, 0), _routing(2))
    again.answer()
    replacement.close()
    snapshots(Slot(tmp_path), _counter(0, 0), _routing(0))
    found = asking.retired(counted=[1])
    assert totals(found) == {"outcrop_invocations": 7}
    assert routing(found)["failovers"] == 8
    assert {d["deployment"]: d["attempts"] for d in routing(found)["deployments"]} == {
        "d0": {"success": 3}, "only-here": {"success": 5}}


def test_a_full_deployment_is_refused_without_taking_the_lock(tmp_path, monkeypatch):
    (_, a), (_, b) = _worker(tmp_path), _worker(tmp_path)
    in_a, in_b = _capacity(a, max_concurrency=1), _capacity(b, max_concurrency=1)
    assert in_a.try_acquire(1) is not None

    def no_lock():
        raise AssertionError("a waiter polling a full deployment took the lock")

    monkeypatch.setattr(b, "locked", no_lock)
    for _ in range(3):  # what a waiting request does every few milliseconds
        assert in_b.try_acquire(1) is None


# -- found in review -----------------------------------------------------------------------------------
def _while_probing(monkeypatch, prober: Slot, n: int, then) -> object:
    """Run ``then`` at the moment ``prober.alive(n)`` holds slot ``n``'s lock file for its probe (as a
    scrape on another worker does, at any time)."""
    import os

    import outcrop.workers as workers

    real_close = os.close
    out: list[object] = []

    def close(fd: int) -> None:
        if not out:
            out.append(None)
            out[0] = then()
        real_close(fd)

    monkeypatch.setattr(workers.os, "close", close)
    try:
        assert not prober.alive(n)
    finally:
        monkeypatch.setattr(workers.os, "close", real_close)
    return out[0]


def test_a_probe_of_a_dead_slot_does_not_make_it_look_alive_to_a_scrape_at_the_same_moment(tmp_path, monkeypatch):
    from outcrop.generations import SNAPSHOT, Generations
    from outcrop.workers import Snapshots

    generations = Generations()
    first, second, third = Slot(tmp_path), Slot(tmp_path), Slot(tmp_path)
    asking = Snapshots(first, generations, lambda: {"metrics": _counter(1, 0), "routing": _routing(1)})
    dying = Snapshots(second, generations, lambda: {"metrics": _counter(5, 3), "routing": _routing(5)})
    generations.bump(SNAPSHOT)
    dying.answer()
    second.close()  # killed
    alone = asking.retired(counted=[])
    assert sum(v for _, _, _, s in merge_metrics(r["metrics"] for r in alone) for _, _, v in s) == 5
    # Worker 2 probes slot 1 (its own scrape) while worker 0 answers one: worker 0 must still count it.
    during = _while_probing(monkeypatch, third, 1, lambda: asking.retired(counted=[]))
    assert sum(v for _, _, _, s in merge_metrics(r["metrics"] for r in during) for _, _, v in s) == 5


def test_a_dead_workers_requests_are_cleared_even_if_its_slot_is_probed_while_its_replacement_starts(
    tmp_path, monkeypatch
):
    (_, a), (b_slot, b), (prober, _) = _worker(tmp_path), _worker(tmp_path), _worker(tmp_path)
    in_a, in_b = _capacity(a, max_concurrency=1), _capacity(b, max_concurrency=1)
    assert in_b.try_acquire(1) is not None  # slot 1
    b_slot.close()  # killed with its request in flight
    # Its replacement starts while a scrape on worker 2 probes slot 1.
    replacement = _while_probing(monkeypatch, prober, 1, lambda: _worker(tmp_path))
    assert replacement[0].number == 3  # slot 1 was locked by the probe at that moment: fine
    assert in_a.try_acquire(1) is not None  # but the dead worker's request must not hold the room forever


def _one_dead_worker(tmp_path):
    """Two workers' slots, the second dead after its last answer to a scrape (5 invocations): the
    generations, the live worker's slot and its Snapshots."""
    from outcrop.generations import SNAPSHOT, Generations
    from outcrop.workers import Snapshots

    generations = Generations()
    first, second = Slot(tmp_path), Slot(tmp_path)
    asking = Snapshots(first, generations, lambda: {"metrics": _counter(1, 0), "routing": _routing(1)})
    dying = Snapshots(second, generations, lambda: {"metrics": _counter(5, 3), "routing": _routing(5)})
    generations.bump(SNAPSHOT)
    dying.answer()
    second.close()  # killed
    return generations, first, asking


def _invocations(states: dict, retired: list) -> float:
    merged = merge_metrics([*(s["metrics"] for s in states.values()), *(r["metrics"] for r in retired)])
    return sum(v for name, _, _, s in merged if name == "outcrop_invocations" for _, _, v in s)


def test_a_worker_replaced_during_a_scrape_is_counted_once(tmp_path, monkeypatch):
    """The scrape's fallback to a worker's last snapshot and its read of the folded counts must agree."""
    import asyncio

    import outcrop.workers as workers
    from outcrop.workers import Snapshots

    monkeypatch.setattr(workers, "SNAPSHOT_WAIT_SECONDS", 0.05)
    generations, _, asking = _one_dead_worker(tmp_path)
    replacement = Slot(tmp_path)  # uvicorn's replacement holds slot 1 and is still starting
    assert replacement.number == 1

    async def scrape() -> float:
        states, retired = await asking.gather()
        # The replacement gets as far as its Snapshots (folding its predecessor) after the scrape read
        # the counts: what it read must still count the dead worker once.
        Snapshots(replacement, generations, lambda: {"metrics": _counter(0, 0), "routing": _routing(0)})
        return _invocations(states, retired)

    assert asyncio.run(scrape()) == 5  # not 10


def test_a_worker_replaced_between_a_scrapes_look_at_the_slots_and_its_sums_is_counted(tmp_path):
    import asyncio

    _, first, asking = _one_dead_worker(tmp_path)
    looked, taken = first.others, []

    def others() -> list[int]:
        found = looked()  # slot 1 is dead: not asked …
        taken.append(Slot(tmp_path))  # … and its replacement takes it now, and has not folded it yet
        return found

    first.others = others  # type: ignore[method-assign]

    async def scrape() -> float:
        states, retired = await asking.gather()
        assert taken[0].number == 1 and states == {}
        return _invocations(states, retired)

    assert asyncio.run(scrape()) == 5  # not 0: a counter that falls is a reset to Prometheus


def test_a_server_started_with_the_pid_of_an_earlier_one_does_not_count_its_state(tmp_path):
    """``outcrop serve`` as PID 1 of a container, restarted on the same data directory: the earlier
    server's folder had the same process ID, and its snapshots and folded counts were summed."""
    import asyncio
    import os

    from outcrop.generations import SNAPSHOT, Generations
    from outcrop.workers import Snapshots, claim_server, sweep

    workers_dir = tmp_path / "workers"
    name, held = claim_server(workers_dir)
    earlier = workers_dir / name
    generations = Generations()
    old = [Slot(earlier), Slot(earlier)]
    generations.bump(SNAPSHOT)
    for slot in old:
        Snapshots(slot, generations, lambda: {"metrics": _counter(7, 1), "routing": _routing(7)}).answer()
        slot.close()  # the earlier server is gone …
    Snapshots(Slot(earlier), generations, lambda: {}).slot.close()  # … having folded a dead worker's counts
    os.close(held)

    name, held = claim_server(workers_dir)  # the same process ID: another folder
    sweep(workers_dir, keep=name)  # what ``outcrop serve`` does before its workers start
    assert [p.name for p in workers_dir.iterdir()] == [name]
    asking = Snapshots(Slot(workers_dir / name), generations, lambda: {"metrics": _counter(0, 0), "routing": _routing(0)})
    states, retired = asyncio.run(asking.gather())
    assert states == {} and retired == []
    os.close(held)


def test_a_servers_folder_stays_while_its_supervisor_or_any_worker_lives(tmp_path):
    """Two servers on one data directory may share a process ID (each PID 1 of its container): a sweep
    must not take a live server's folder for a dead one's, nor a folder whose supervisor was killed while
    its workers serve on."""
    import os

    from outcrop.workers import claim_server, sweep

    workers_dir = tmp_path / "workers"
    first, first_held = claim_server(workers_dir)
    second, second_held = claim_server(workers_dir)
    assert first != second
    sweep(workers_dir, keep=second)
    assert (workers_dir / first).is_dir()  # its supervisor lives
    worker = Slot(workers_dir / first)
    os.close(first_held)  # its supervisor is killed; its worker serves on
    sweep(workers_dir, keep=second)
    assert (workers_dir / first).is_dir()
    worker.close()
    sweep(workers_dir, keep=second)
    assert not (workers_dir / first).exists()
    assert (workers_dir / second).is_dir()
    os.close(second_held)


def test_a_server_starting_is_not_swept_between_creating_and_locking_its_server_lock(tmp_path, monkeypatch):
    """Another server's sweep at the moment ``claim_server`` has created its ``server.lock`` but not yet
    locked it took the starting server's hidden folder for a dead one and removed it: the start failed."""
    import fcntl

    import outcrop.workers as workers

    real = fcntl.flock
    swept: list[bool] = []

    def flock(fd: int, op: int) -> None:
        if op == fcntl.LOCK_SH and not swept:
            swept.append(True)
            workers.sweep(tmp_path, keep="another-server")  # a second server starting on the same data dir
        real(fd, op)

    monkeypatch.setattr(workers.fcntl, "flock", flock)
    name, fd = workers.claim_server(tmp_path)
    try:
        assert swept and (tmp_path / name / workers.SERVER_LOCK).exists()
    finally:
        os.close(fd)


def test_a_deployment_only_a_dead_worker_used_has_every_field_of_a_live_one(tmp_path):
    """/_outcrop/routing: a deployment kept only by a dead worker's counts was listed without the fields
    every other deployment has (backend, maxConcurrency, rpm, tpm)."""
    from outcrop.workers import fold_counts, retired_counts

    def status(deployment: str) -> dict:
        routing = _routing(2, deployment=deployment)
        for d in routing["deployments"]:
            d.update(backend="builtin", maxConcurrency=None, rpm=None, tpm=None)
        return routing

    gone = fold_counts([retired_counts({"metrics": [], "routing": status("only-the-dead-one")})])
    merged = merge_routing([status("d0")], [gone["routing"]])
    fields = [set(d) for d in merged["deployments"]]
    assert len(fields) == 2 and fields[0] - {"breakersOpen"} <= fields[1], fields
