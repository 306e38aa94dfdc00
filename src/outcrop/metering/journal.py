"""The local journal: append-only files of usage events.

Two modes (``fsync``), both losing nothing when the server process dies, ``kill -9`` included:

- ``"interval"`` (the default): ``append`` copies the line into the segment, which is mapped into memory
  (``mmap``, ``MAP_SHARED``, its blocks reserved up front with ``posix_fallocate``), on the calling
  (event-loop) thread before the invocation answers: no system call at all. The mapped pages are the
  file's pages in the kernel's page cache, which outlives the process, so once the copy is done the line
  survives the process's death, ``kill -9`` included. A syncer thread ``fdatasync``s every ``interval``
  seconds, so a crash of the whole machine (power, kernel) loses at most that window. The invocation
  waits for nothing. (Where the file system cannot reserve blocks, each line is a ``write(2)`` instead:
  the same guarantee, a system call each.) A mapped segment is longer than its lines: the zeros after
  the last line are not data.
- ``"always"``: the line is on disk before the invocation answers, and survives a power cut too (below).

Each server process owns its segments, ``<owner>-<n>.jsonl`` in ``<data_dir>/metering/``, one JSON
event per line, and holds an exclusive ``flock`` on ``<owner>.lock`` for as long as it lives; the kernel
drops that lock when the process dies, however it dies. A segment whose owner's lock can be taken is an
orphan (its process is gone) and any process may claim it, by taking the lock, and drain it.

In ``"always"`` mode ``append`` (on the event loop) only queues the line and its future in memory. One flusher thread takes
whatever has accumulated since it last looked, writes it with one ``write(2)`` on a file opened
``O_DSYNC`` (the write returns once the data is on disk: a write and an fdatasync in one call) and
resolves the group's futures with one ``loop.call_soon_threadsafe``: many invocations share one write and
one fsync, and the event loop never makes a system call for the journal. (A future per line, not one
shared: a cancelled waiter must not cancel its neighbours'.) A line is durable when its future resolves, not before: an
invocation whose future has not resolved has not answered its client, so a kill -9 before then loses
no acknowledged event. A kill -9 inside the flusher's ``write`` can leave a torn last line, which
recovery skips (its invocation was never acknowledged).

Segments roll over at ``segment_bytes``; a sealed segment is deleted once every event in it has been
committed to the database (``release``). Replaying a segment twice is harmless: the database ingests
by request ID, and an event it already holds is skipped.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import mmap
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from outcrop.futures import settle

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024
FSYNC_MODES = ("interval", "always")
DEFAULT_FSYNC_INTERVAL = 0.1


@dataclass
class _Segment:
    path: Path
    fd: int
    last_seq: int = -1  # the sequence number of its last line, once sealed
    size: int = 0
    sealed: bool = False
    synced_size: int = 0  # bytes known to be on disk (``"interval"`` mode)
    mapped: mmap.mmap | None = None  # ``"interval"`` mode, where the file system reserves blocks
    capacity: int = 0  # the mapped length

    def close(self) -> None:
        if self.mapped is not None:
            self.mapped.close()
        os.close(self.fd)


class Journal:
    """This process's append-only event log."""

    def __init__(
        self, directory: Path, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES, fsync: str = "always",
        interval: float = DEFAULT_FSYNC_INTERVAL,
    ) -> None:
        if fsync not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_MODES)}, not {fsync!r}")
        self.directory = directory
        self.fsync = fsync
        self._interval = interval
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        # Locked under a private name, then renamed: no other process ever sees it unlocked.
        hidden = directory / f".{self.owner}.lock.new"
        self._lock_fd = os.open(hidden, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        hidden.rename(directory / f"{self.owner}.lock")
        self._segment_bytes = segment_bytes
        self._mutex = threading.Lock()
        # Lines queued since the flusher last took them, and their futures.
        self._pending: list[bytes] = []
        self._futures: list[asyncio.Future[None]] = []
        self._signalled = False
        self.written = 0  # sequence number of the last line queued
        self.synced = 0  # … and of the last line made durable
        self.fsyncs = 0
        self._segments: list[_Segment] = []
        self._counter = 0
        self._wake = threading.Event()
        self._closed = False
        self._failure: OSError | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retired: list[_Segment] = []  # released segments, closed and deleted by the flusher
        self._dir_dirty = False
        self._map = fsync == "interval"  # until the file system refuses to reserve blocks
        self._open_segment()
        run = self._run_flusher if fsync == "always" else self._run_syncer
        self._flusher = threading.Thread(target=run, name="outcrop-journal", daemon=True)
        self._flusher.start()

    # -- appending (event-loop thread) ---------------------------------------------------------------
    def append(self, line: bytes) -> tuple[int, asyncio.Future[None] | None]:
        """Journal one event line (ending in a newline).

        Returns (sequence number, future): in ``"always"`` mode the future resolves once the line is on
        disk; in ``"interval"`` mode the line is written when this returns and the future is None.
        """
        if self.fsync == "interval":
            return self._write_now(line)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._mutex:
            if self._closed or self._failure is not None:
                raise RuntimeError("the journal is closed") from self._failure
            self._pending.append(line)
            self._futures.append(future)
            self.written += 1
            if not self._signalled:
                self._signalled = True
                self._wake.set()
            return self.written, future

    def _write_now(self, line: bytes) -> tuple[int, None]:
        """``"interval"`` mode: the line into the page cache, where a dead process's data survives.

        Only the event-loop thread appends, so the open segment is this thread's; the mutex is taken only
        to roll over.
        """
        if self._closed or self._failure is not None:
            raise RuntimeError("the journal is closed") from self._failure
        segment = self._segments[-1]
        end = segment.size + len(line)
        if segment.size >= self._segment_bytes or (segment.mapped is not None and end > segment.capacity):
            with self._mutex:
                segment.sealed, segment.last_seq = True, self.written
                segment = self._open_segment(sync_directory=False, room=len(line))
                self._dir_dirty = True
            end = len(line)
        mapped = segment.mapped
        if mapped is not None:
            mapped[segment.size : end] = line
            segment.size = end
            self.written += 1
            return self.written, None
        try:
            _write_all(segment.fd, line)
        except OSError as e:  # the disk is full or failing: fail this invocation, and the ones after it
            log.exception("metering: the journal cannot be written")
            self._failure = e
            raise
        segment.size += len(line)
        self.written += 1
        return self.written, None

    # -- releasing drained segments (drainer thread) -------------------------------------------------
    def release(self, drained_seq: int) -> None:
        """Every event up to ``drained_seq`` is in the database: delete the sealed segments it covers."""
        with self._mutex:
            done = [s for s in self._segments if s.sealed and s.last_seq <= drained_seq]
            self._segments = [s for s in self._segments if s not in done]
            if self.fsync == "interval":
                # The syncer may be inside fdatasync on one of them: it closes them itself.
                self._retired.extend(done)
                return
        for segment in done:
            segment.close()
            segment.path.unlink(missing_ok=True)

    def close(self, *, drained_seq: int) -> None:
        """Stop the flusher after a final write and sync; delete what was drained; release the owner lock."""
        with self._mutex:
            self._closed = True
        self._wake.set()
        self._flusher.join()
        with self._mutex:
            current = self._segments[-1]
            current.sealed, current.last_seq = True, self.written
        self.release(drained_seq)
        self._close_retired()
        for segment in self._segments:
            segment.close()
        os.close(self._lock_fd)
        if not self._segments:
            (self.directory / f"{self.owner}.lock").unlink(missing_ok=True)

    # -- the flusher thread --------------------------------------------------------------------------
    def _run_flusher(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._mutex:
                lines, self._pending = self._pending, []
                futures, self._futures = self._futures, []
                target = self.written
                closing = self._closed
                self._signalled = False
            error: OSError | None = None
            if lines:
                try:
                    self._write(b"".join(lines), first_seq=target - len(lines) + 1)
                except OSError as e:  # the disk is full or failing: fail these invocations, never hang them
                    log.exception("metering: the journal cannot be written")
                    error = self._failure = e
                else:
                    self.synced = target
            if futures and self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(_resolve, futures, error)
            if error is not None or (closing and not self._pending):
                return

    def _run_syncer(self) -> None:
        """``"interval"`` mode: make what was written durable every ``interval`` seconds, and at close."""
        while True:
            closing = self._wake.wait(self._interval)
            self._wake.clear()
            self._close_retired()
            with self._mutex:
                target = self.written
                dirty = [(s, s.size) for s in self._segments if s.size > s.synced_size]
                sync_dir, self._dir_dirty = self._dir_dirty, False
            try:
                for segment, size in dirty:
                    os.fdatasync(segment.fd)
                    segment.synced_size = size
                if sync_dir:
                    _fsync_directory(self.directory)
            except OSError as e:
                log.exception("metering: the journal cannot be synced")
                self._failure = e
                return
            self.synced = target
            self.fsyncs += len(dirty)
            if closing and self._closed:
                return

    def _close_retired(self) -> None:
        with self._mutex:
            retired, self._retired = self._retired, []
        for segment in retired:
            segment.close()
            segment.path.unlink(missing_ok=True)

    def _write(self, data: bytes, first_seq: int) -> None:
        segment = self._segments[-1]
        if segment.size >= self._segment_bytes:
            # Every line before this group is already written and synced: seal, then roll over.
            with self._mutex:
                segment.sealed, segment.last_seq = True, first_seq - 1
                segment = self._open_segment()
        _write_all(segment.fd, data)  # O_DSYNC: durable when it returns, one system call per group
        segment.size += len(data)
        self.fsyncs += 1

    def _open_segment(self, *, sync_directory: bool = True, room: int = 0) -> _Segment:
        self._counter += 1
        path = self.directory / f"{self.owner}-{self._counter:06d}.jsonl"
        if self._map:
            segment = self._open_mapped(path, max(self._segment_bytes, room))
            if segment is not None:
                if sync_directory:
                    _fsync_directory(self.directory)
                self._segments.append(segment)
                return segment
        # O_DSYNC rather than write + fdatasync: one system call, so the flusher gives up and retakes the
        # GIL once per group, not twice (each retake waits out the event loop's switch interval).
        flags = os.O_CREAT | os.O_WRONLY | os.O_APPEND | (os.O_DSYNC if self.fsync == "always" else 0)
        fd = os.open(path, flags, 0o600)
        if sync_directory:
            # The new file's directory entry must survive a crash too.
            _fsync_directory(self.directory)
        segment = _Segment(path, fd)
        self._segments.append(segment)
        return segment


    def _open_mapped(self, path: Path, capacity: int) -> _Segment | None:
        """A segment of ``capacity`` reserved bytes, mapped; None where the file system cannot reserve them
        (writing through a map onto unreserved blocks of a full disk would kill the process with SIGBUS)."""
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            os.posix_fallocate(fd, 0, capacity)
            mapped = mmap.mmap(fd, capacity)
        except OSError as e:
            log.warning("metering: cannot map journal segments here (%s); writing each line instead", e)
            self._map = False
            os.close(fd)
            path.unlink(missing_ok=True)
            return None
        return _Segment(path, fd, mapped=mapped, capacity=capacity)


def _fsync_directory(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _resolve(futures: list[asyncio.Future[None]], error: OSError | None) -> None:
    for future in futures:
        settle(future, None, error)


# -- recovery --------------------------------------------------------------------------------------
@dataclass
class Orphan:
    """The segments of a process that is gone, claimed by this one (its lock held until ``done``)."""

    directory: Path
    owner: str
    lock_fd: int
    segments: list[Path]

    def lines(self) -> Iterator[bytes]:
        """Every complete line; a torn last line (the process died inside ``write``, or copying into a mapped
        segment) is skipped, as are the zeros after the last line of a mapped segment."""
        for path in self.segments:
            data = path.read_bytes()
            end = data.rfind(b"\n")
            if end < 0:
                continue
            yield from (line for line in data[: end + 1].splitlines() if line)

    def done(self) -> None:
        for path in self.segments:
            path.unlink(missing_ok=True)
        (self.directory / f"{self.owner}.lock").unlink(missing_ok=True)
        os.close(self.lock_fd)


def claim_orphans(directory: Path, own_owner: str) -> list[Orphan]:
    """The segments of dead processes, each owner's locked for this process to drain."""
    if not directory.exists():
        return []
    owners: dict[str, list[Path]] = {}
    for path in directory.glob("*.jsonl"):
        owner = path.stem.rsplit("-", 1)[0]
        owners.setdefault(owner, []).append(path)
    for lock in directory.glob("*.lock"):
        owners.setdefault(lock.stem, [])
    claimed: list[Orphan] = []
    for owner, paths in owners.items():
        if owner == own_owner:
            continue
        try:
            fd = os.open(directory / f"{owner}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        # Another claimant may have finished (and deleted) them between listing and locking.
        paths = sorted(p for p in paths if p.exists())
        claimed.append(Orphan(directory, owner, fd, paths))
    return claimed
