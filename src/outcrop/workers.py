"""What the workers of one ``outcrop serve`` share through its data directory: who is alive, the limits
of each deployment, and the state a scrape of ``/metrics`` or ``/_outcrop/routing`` sums. Each server
keeps these in a folder of its own, ``workers/<supervisor's process ID>-<random>`` (``SERVER_ENV``,
``claim_server``): its process ID alone is not unique, as two containers on one volume may both be PID 1.
The supervisor and every worker hold a shared ``flock`` on the folder's ``server.lock`` while they live,
and ``sweep`` removes a folder once nobody does; the paths below are in it.

**Slots.** Each worker holds an exclusive ``flock`` on ``workers/<n>.lock`` (the lowest ``n`` free) for
as long as it lives; the kernel drops it when the process dies, however it dies, so a slot whose lock can
be taken belongs to no live worker. A slot number indexes the worker's share of the limits below.

**Limits** (``SharedLimits``, the mapped file ``workers/limits``): one cell per limited deployment, found
by a hash of (Region, model, deployment name), holding the RPM and TPM buckets (level and time of the
last refill, on ``CLOCK_MONOTONIC``, which every process reads alike) and, per slot, the requests that
worker has outstanding. Admission takes an exclusive ``flock`` on the file around its check-and-take,
so two workers never both take the last room. A worker only ever changes its own slot's count; a worker
that takes a slot first zeroes the counts of every slot with no live owner, so the requests of a worker
that died (``kill -9``: its leases were never released) stop counting when uvicorn starts its
replacement. Deployments without limits never touch the file.

**Snapshots** (``Snapshots``): a scrape is answered by one worker, which asks the others for their state
(a bump of ``generations.SNAPSHOT``), waits until each live one has written ``workers/<n>.json`` answering
that request (each looks every ``SNAPSHOT_POLL_SECONDS``), and sums them with its own
(``merge_routing``, ``merge_metrics``). A worker that does not answer in time (stuck or starting) is
summed from its last snapshot. A worker that died still counts in the sums of counters and histograms,
and in ``/_outcrop/routing``'s counts (attempts, failovers, rejections, breaker openings), from its last
snapshot (``Snapshots.retired``), so that they never fall, which Prometheus would read as a reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from outcrop.generations import SNAPSHOT, Generations
from outcrop.mapped import locked, open_mapped

log = logging.getLogger("outcrop")

MAX_WORKERS = 64
# The server a worker belongs to (``claim_server``'s name), set by ``outcrop serve`` for its workers:
# each server keeps its slots, limits and snapshots in ``<data_dir>/workers/<server>``, so that two servers
# on one data directory neither mix their figures nor share their limits.
SERVER_ENV = "OUTCROP_SERVER_ID"
SNAPSHOT_POLL_SECONDS = 0.02
SNAPSHOT_WAIT_SECONDS = 1.0


# -- slots ---------------------------------------------------------------------------------------------
def _try_lock(path: Path) -> int | None:
    """An open descriptor holding ``path``'s exclusive lock, or None when another holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


SERVER_LOCK = "server.lock"
SLOT_PASSES = 5


def claim_server(directory: Path) -> tuple[str, int]:
    """A folder of ``directory`` for a new server: (its name, a descriptor holding a shared lock on its
    ``server.lock``, which the caller keeps open while the server runs). Made under a hidden name and
    renamed once locked, so that no ``sweep`` ever sees it unlocked."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{os.getpid()}-{secrets.token_hex(4)}"
    hidden = directory / f".{name}"
    hidden.mkdir(mode=0o700)
    # Locked under another name, then named ``server.lock``: a ``sweep`` that finds the folder's lock file
    # finds it locked (the lock follows the file), never in the moment between its creation and its lock.
    partial = hidden / f"{SERVER_LOCK}.new"
    fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        partial.rename(hidden / SERVER_LOCK)
        hidden.rename(directory / name)
    except BaseException:
        os.close(fd)
        raise
    return name, fd


def _hold_server(directory: Path) -> int:
    """A shared lock on the server's ``server.lock``, held by a worker while it lives, so that its folder
    outlives a supervisor killed before its workers; -1 where there is none (a server not started by
    ``outcrop serve``)."""
    try:
        fd = os.open(directory / SERVER_LOCK, os.O_RDWR)
    except FileNotFoundError:
        return -1
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


class Slot:
    """This worker's slot among the server's workers, held until ``close``."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._server_fd = _hold_server(directory)
        try:
            # A free slot is locked for a moment by any other worker's probe (``alive``): look a few times.
            for attempt in range(SLOT_PASSES):
                for n in range(MAX_WORKERS):
                    fd = _try_lock(directory / f"{n}.lock")
                    if fd is not None:
                        self.number, self._fd = n, fd
                        return
                time.sleep(0.01 * (attempt + 1))
            raise RuntimeError(f"more than {MAX_WORKERS} workers share the data directory {directory.parent}")
        except BaseException:
            if self._server_fd >= 0:
                os.close(self._server_fd)
            raise

    def alive(self, n: int) -> bool:
        """Does a live worker hold slot ``n``? (Always true for this worker's own.)"""
        if n == self.number:
            return True
        # A shared lock for the probe: probes of the same slot by other workers at the same moment (their
        # scrapes, a starting worker's look for dead slots) do not take each other for the slot's owner.
        try:
            fd = os.open(self.directory / f"{n}.lock", os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def others(self) -> list[int]:
        """The slots of the other live workers."""
        return [n for n in range(MAX_WORKERS) if n != self.number and self.alive(n)]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._server_fd >= 0:
            os.close(self._server_fd)
            self._server_fd = -1


# -- limits --------------------------------------------------------------------------------------------
_KEY = 16  # bytes of a cell's key (a BLAKE2b digest of the deployment's identity)
_BUCKETS = struct.Struct("=dddd")  # RPM level, RPM refilled at, TPM level, TPM refilled at
_COUNTS = struct.Struct(f"={MAX_WORKERS}i")  # requests outstanding, per slot
_CELL = 512  # bytes per cell: key, buckets, counts, padding
_BUCKETS_AT, _COUNTS_AT = _KEY, _KEY + _BUCKETS.size
CELLS = 4096  # deployments with limits that one server can share (2 MiB, reserved on disk)
assert _COUNTS_AT + _COUNTS.size <= _CELL


class SharedLimits:
    """The mapped file of every limited deployment's shared state; one per worker process."""

    def __init__(self, path: Path, slot: Slot) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.slot = slot.number
        self._fd, self._map = open_mapped(path, CELLS * _CELL)
        self._cells: dict[bytes, Cell] = {}
        with self.locked():
            # Under the lock, which every change of a count takes: a worker that takes a slot after this
            # look has counted nothing yet, and clears its own slot's counts itself.
            dead = [n for n in range(MAX_WORKERS) if not slot.alive(n)] + [slot.number]
            for at in range(0, CELLS * _CELL, _CELL):
                if self._map[at:at + _KEY] != bytes(_KEY):
                    for n in dead:
                        struct.pack_into("=i", self._map, at + _COUNTS_AT + 4 * n, 0)

    def locked(self) -> contextlib.AbstractContextManager[None]:
        return locked(self._fd)

    def cell(self, region: str, model_id: str, name: str, rpm: int, tpm: int) -> Cell | None:
        """The cell of one deployment (made, its buckets full, if no worker made it yet), or None when the
        file is full (the deployment's limits are then this worker's own)."""
        key = hashlib.blake2b(f"{region}\0{model_id}\0{name}".encode(), digest_size=_KEY).digest()
        found = self._cells.get(key)
        if found is not None:
            return found
        start = int.from_bytes(key[:4], "little") % CELLS
        with self.locked():
            for i in range(CELLS):
                at = ((start + i) % CELLS) * _CELL
                held = self._map[at:at + _KEY]
                if held == key:
                    break
                if held == bytes(_KEY):
                    self._map[at:at + _KEY] = key
                    _BUCKETS.pack_into(self._map, at + _BUCKETS_AT, rpm, time.monotonic(), tpm, time.monotonic())
                    break
            else:
                log.warning("limits of %s in %s (%s) are this worker's own: the shared file is full",
                            model_id, region, name)
                return None
        found = self._cells[key] = Cell(self, at)
        return found

    def close(self) -> None:
        if self._fd >= 0:
            self._cells.clear()
            self._map.close()
            os.close(self._fd)
            self._fd = -1


class Cell:
    """One deployment's shared state. Bucket reads and writes belong inside ``limits.locked()``."""

    __slots__ = ("_counts", "_map", "_mine", "at", "limits")

    def __init__(self, limits: SharedLimits, at: int) -> None:
        self.limits = limits
        self._map = limits._map
        self.at = at
        self._counts = at + _COUNTS_AT
        self._mine = self._counts + 4 * limits.slot

    def outstanding(self) -> int:
        """Requests outstanding in every worker."""
        return sum(_COUNTS.unpack_from(self._map, self._counts))

    def add(self, delta: int) -> None:
        """Change this worker's own count (inside ``limits.locked()``, which a starting worker's clearing of
        dead slots takes too)."""
        now = struct.unpack_from("=i", self._map, self._mine)[0]
        struct.pack_into("=i", self._map, self._mine, now + delta)

    def bucket(self, which: int) -> tuple[float, float]:
        """(level, refilled at) of bucket 0 (RPM) or 1 (TPM)."""
        return struct.unpack_from("=dd", self._map, self.at + _BUCKETS_AT + 16 * which)  # type: ignore[return-value]

    def set_bucket(self, which: int, level: float, updated: float) -> None:
        struct.pack_into("=dd", self._map, self.at + _BUCKETS_AT + 16 * which, level, updated)


# -- snapshots -----------------------------------------------------------------------------------------
class Snapshots:
    """This worker's answers to the others' scrapes, and its way of asking them for theirs."""

    def __init__(self, slot: Slot, generations: Generations, state: Callable[[], dict[str, Any]]) -> None:
        """``generations`` holds the scrape counter (``SNAPSHOT``), shared by the server's workers; ``state``
        is this worker's own state, as JSON-ready values."""
        self.slot = slot
        self._generations = generations
        self._state = state
        self._answered = -1
        self._task: asyncio.Task[None] | None = None
        self._retire(slot.number)  # what the worker before this one in the slot counted

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._answer_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _path(self, n: int) -> Path:
        return self.slot.directory / f"{n}.json"

    async def _answer_forever(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_POLL_SECONDS)
            try:
                self.answer()
            except Exception:  # a scrape goes on without this worker; the next request is answered again
                log.exception("writing this worker's state for a scrape failed")

    def answer(self) -> None:
        """Write this worker's state if a scrape asked for it since the last answer."""
        wanted = self._generations[SNAPSHOT]
        if wanted == self._answered:
            return
        path = self._path(self.slot.number)
        partial = path.with_suffix(".json.new")
        partial.write_bytes(orjson.dumps({"generation": wanted, "state": self._state()}))
        partial.replace(path)
        self._answered = wanted

    # -- the counts of workers gone ---------------------------------------------------------------------
    # A count summed over the workers must not fall when one dies (Prometheus would read a reset): the
    # last snapshot of a dead worker is counted until its slot's next worker folds it into
    # ``retired.json``, under a lock that a scrape takes to read both, so that none is counted twice or
    # missed. Gauges are not kept: what a dead worker had in progress is over.

    @contextlib.contextmanager
    def _retired_lock(self, kind: int) -> Iterator[None]:
        fd = os.open(self.slot.directory / "retired.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, kind)
            yield
        finally:
            os.close(fd)

    def _retire(self, n: int) -> None:
        path = self._path(n)
        retired = self.slot.directory / "retired.json"
        with self._retired_lock(fcntl.LOCK_EX):
            snapshot = self._read(n)
            if snapshot is not None:
                before = _load(retired) or {}
                partial = retired.with_suffix(".json.new")
                partial.write_bytes(orjson.dumps(fold_counts([before, retired_counts(snapshot["state"])])))
                partial.replace(retired)
            path.unlink(missing_ok=True)

    def retired(self, counted: Iterable[int]) -> list[dict[str, Any]]:
        """The counts of workers gone (``retired_counts``): folded ones, and the last snapshot of any slot
        but this worker's and ``counted`` (whose state the caller sums)."""
        return self._collect(set(counted), set(counted))[1]

    def _collect(self, others: set[int], fresh: set[int]) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
        """Under the lock that ``_retire`` takes, so that a snapshot is read either where it is or folded,
        never both nor neither: the snapshots of ``others`` (live when the scrape began; ``fresh``: those
        that answered it) as their state, and every other slot's snapshot and the folded counts as counts
        of workers gone (a slot taken since the scrape began: its predecessor's, not folded yet)."""
        states: dict[int, dict[str, Any]] = {}
        out: list[dict[str, Any]] = []
        with self._retired_lock(fcntl.LOCK_SH):
            folded = _load(self.slot.directory / "retired.json")
            if folded:
                out.append(folded)
            for path in self.slot.directory.glob("*.json"):
                if not path.stem.isdigit() or (n := int(path.stem)) == self.slot.number:
                    continue
                snapshot = self._read(n)
                if snapshot is None:
                    continue
                if n in others:
                    if n not in fresh:
                        log.warning("worker %d did not answer a scrape within %.1f s; its last state is used",
                                    n, SNAPSHOT_WAIT_SECONDS)
                    states[n] = snapshot["state"]
                else:
                    out.append(retired_counts(snapshot["state"]))
        return dict(sorted(states.items())), out

    async def gather(self) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
        """The state of every other live worker, by slot, fresh (as of now) where it answered in time; and
        the counts of workers gone (``retired``), read with them."""
        wanted = self._generations.bump(SNAPSHOT)  # this worker's own state is taken live by the caller; its poll answers
        # the bump too, which a scrape on another worker at the same moment may be waiting for
        others = set(self.slot.others())
        fresh: set[int] = set()
        deadline = time.monotonic() + SNAPSHOT_WAIT_SECONDS
        while True:
            for n in others - fresh:
                snapshot = self._read(n)
                if snapshot is not None and snapshot["generation"] >= wanted:
                    fresh.add(n)
            if fresh == others or time.monotonic() >= deadline:
                break
            await asyncio.sleep(SNAPSHOT_POLL_SECONDS / 4)
        return self._collect(others, fresh)

    def _read(self, n: int) -> dict[str, Any] | None:
        snapshot: dict[str, Any] | None = _load(self._path(n))
        return snapshot


def _load(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None


def retired_counts(state: dict[str, Any]) -> dict[str, Any]:
    """What of a worker's state outlives it: its metrics but the gauges, and its routing counts."""
    metrics = [f for f in state.get("metrics", []) if f[1] != "gauge"]
    routing = state.get("routing")
    if routing is None:
        return {"metrics": metrics}
    # The deployment's identity and settings (listed as a live worker lists them, should only this worker
    # have used it), and its counts.
    deployments = [{**{k: d[k] for k in _DEPLOYMENT_SETTINGS if k in d},
                    "attempts": d["attempts"], "timesOpened": d["timesOpened"]} for d in routing["deployments"]]
    return {"metrics": metrics, "routing": {"failovers": routing["failovers"], "rejections": routing["rejections"],
                                            "deployments": deployments}}


_DEPLOYMENT_SETTINGS = ("region", "model", "deployment", "backend", "maxConcurrency", "rpm", "tpm")


def fold_counts(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Several ``retired_counts`` as one."""
    parts = [p for p in parts if p]
    routing: dict[str, Any] = {"failovers": 0, "rejections": {}, "deployments": []}
    for part in parts:
        if part.get("routing"):
            _add_counts(routing, part["routing"], neutral=False)
    return {"metrics": merge_metrics(p.get("metrics", []) for p in parts), "routing": routing}


def sweep(directory: Path, keep: str) -> None:
    """Remove what servers no longer running left in ``directory``: each folder whose ``server.lock`` no
    process holds (``claim_server``), but ``keep``, this server's. A folder without one (a server not
    started by ``outcrop serve``, named by its parent's process ID) goes once that process is gone."""
    if not directory.is_dir():
        return
    for child in directory.iterdir():
        if not child.is_dir() or child.name == keep:
            continue
        try:
            fd = os.open(child / SERVER_LOCK, os.O_RDWR)
        except FileNotFoundError:
            if child.name.isdigit() and not _process_alive(int(child.name)):
                shutil.rmtree(child, ignore_errors=True)
            continue  # a hidden folder not locked yet is a server starting: leave it
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live server's
        else:
            shutil.rmtree(child, ignore_errors=True)
        finally:
            os.close(fd)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process: not ours to judge
    return True


# -- sums ----------------------------------------------------------------------------------------------
_BREAKER_ORDER = {"closed": 0, "half-open": 1, "open": 2}


def merge_routing(states: Iterable[dict[str, Any]], retired: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """The routing status of several workers as one: counts summed; per deployment the worst breaker
    (``breakersOpen`` says in how many workers it is open), the longest wait for a probe, and the least
    room left in a shared bucket. ``retired``: the routing counts of workers gone (``retired_counts``),
    added to the counts."""
    states = list(states)
    merged = dict(states[0])
    merged["failovers"] = sum(s["failovers"] for s in states)
    merged["waiting"] = sum(s["waiting"] for s in states)
    merged["rejections"] = _summed(*(s["rejections"] for s in states))
    deployments: dict[tuple[str, str, str], dict[str, Any]] = {}
    for s in states:
        for d in s["deployments"]:
            key = (d["region"], d["model"], d["deployment"])
            into = deployments.get(key)
            open_here = int(d["breaker"] == "open")
            if into is None:
                deployments[key] = {**d, "attempts": _summed(d["attempts"]), "breakersOpen": open_here}
                continue
            if _BREAKER_ORDER[d["breaker"]] > _BREAKER_ORDER[into["breaker"]]:
                into["breaker"] = d["breaker"]
            into["breakersOpen"] += open_here
            into["consecutiveFailures"] = max(into["consecutiveFailures"], d["consecutiveFailures"])
            into["timesOpened"] += d["timesOpened"]
            into["outstanding"] += d["outstanding"]
            into["attempts"] = _summed(into["attempts"], d["attempts"])
            for field in ("rpmAvailable", "tpmAvailable"):
                if field in d:
                    into[field] = min(into.get(field, d[field]), d[field])
            if "probeInMs" in d:
                into["probeInMs"] = max(into.get("probeInMs", 0), d["probeInMs"])
    merged["deployments"] = list(deployments.values())
    merged["workers"] = len(states)
    for counts in retired:
        _add_counts(merged, counts, neutral=True)
    return merged


def _add_counts(into: dict[str, Any], counts: dict[str, Any], *, neutral: bool) -> None:
    """Add a dead worker's routing counts to ``into``. A deployment only it had used is added as well: with
    ``neutral``, with the fields of a live status, its breaker closed and nothing outstanding."""
    into["failovers"] += counts["failovers"]
    into["rejections"] = _summed(into["rejections"], counts["rejections"])
    known = {(d["region"], d["model"], d["deployment"]): d for d in into["deployments"]}
    for d in counts["deployments"]:
        target = known.get((d["region"], d["model"], d["deployment"]))
        if target is None:
            target = {**d, "attempts": {}, "timesOpened": 0}
            if neutral:
                target.update(breaker="closed", consecutiveFailures=0, outstanding=0, breakersOpen=0)
            into["deployments"].append(target)
            known[(d["region"], d["model"], d["deployment"])] = target
        target["attempts"] = _summed(target["attempts"], d["attempts"])
        target["timesOpened"] += d["timesOpened"]


def _summed(*counts: dict[str, int]) -> dict[str, int]:
    """Counts by name (attempts by outcome, rejections by reason), added up, sorted by name."""
    total: dict[str, int] = {}
    for each in counts:
        for name, n in each.items():
            total[name] = total.get(name, 0) + n
    return dict(sorted(total.items()))


# A Prometheus family as a snapshot holds it: (name, type, help, [(sample name, labels, value)]).
Family = tuple[str, str, str, list[tuple[str, dict[str, str], float]]]
# Gauges that are not sums over workers: the worst state wins.
MAX_GAUGES = frozenset({"outcrop_routing_breaker_state"})


def merge_metrics(workers: Iterable[list[Family]]) -> list[Family]:
    """Families of several workers as one set: each sample summed over the workers that have it (counters,
    histograms, gauges of amounts), except the worst of a state gauge and the earliest ``_created``."""
    order: list[str] = []
    families: dict[str, tuple[str, str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]] = {}
    for worker in workers:
        for name, kind, documentation, samples in worker:
            family = families.get(name)
            if family is None:
                order.append(name)
                family = families[name] = (kind, documentation, {})
            values = family[2]
            for sample, labels, value in samples:
                key = (sample, tuple(sorted(labels.items())))
                before = values.get(key)
                if before is None:
                    values[key] = value
                elif sample.endswith("_created"):
                    values[key] = min(before, value)
                elif name in MAX_GAUGES:
                    values[key] = max(before, value)
                else:
                    values[key] = before + value
    return [
        (name, families[name][0], families[name][1],
         [(sample, dict(labels), value) for (sample, labels), value in families[name][2].items()])
        for name in order
    ]
