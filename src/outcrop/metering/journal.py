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

Segments roll over at ``segment_bytes``. The journal only ever appends: its segments are read, stored and
deleted by the ingester (``outcrop.metering.ingester``), in another process or thread, which follows
them (``Tail``) and publishes how far it has got in ``<owner>.progress`` (``Progress``). Segment *n* is
sealed, never written again, once segment *n + 1* exists. Replaying a segment twice is harmless: the
database ingests by request ID, and an event it already holds is skipped.
"""

from __future__ import annotations

import asyncio
import fcntl
import glob
import logging
import mmap
import os
import secrets
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

from outcrop.futures import settle
from outcrop.mapped import open_mapped

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024
FSYNC_MODES = ("interval", "always")
DEFAULT_FSYNC_INTERVAL = 0.1


@dataclass
class _Segment:
    path: Path
    fd: int
    size: int = 0
    sealed: bool = False  # the next segment is open: this one is never written again
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

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def lock_fd(self) -> int:
        """The descriptor holding the owner lock: a process that inherits it holds the lock too."""
        return self._lock_fd

    def close(self, *, keep_lock: bool = False) -> None:
        """Write and sync what is queued, then stop. The segments stay for the ingester (or for recovery).

        With ``keep_lock`` the owner lock is held until ``unlock``: this process goes on ingesting them.
        """
        with self._mutex:
            self._closed = True
        self._wake.set()
        self._flusher.join()
        for segment in self._segments:
            segment.close()
        self._segments = []
        if not keep_lock:
            self.unlock()

    def unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

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
                    self._write(b"".join(lines))
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
            self._wake.wait(self._interval)
            self._wake.clear()
            with self._mutex:
                # Read under the lock, not from the wake-up: a close that set the event between a timed-out
                # wait and the clear above would otherwise be lost, and close() would wait on this thread forever.
                closing = self._closed
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
            with self._mutex:
                # Sealed and on disk: this process is done with them (the ingester deletes them).
                done = [s for s in self._segments if s.sealed and s.synced_size == s.size]
                self._segments = [s for s in self._segments if s not in done]
            for segment in done:
                segment.close()
            if closing:
                return

    def _write(self, data: bytes) -> None:
        segment = self._segments[-1]
        if segment.size >= self._segment_bytes:
            # Every line written so far is on disk: roll over, and be done with the full segment.
            full = segment
            with self._mutex:
                segment = self._open_segment()
                self._segments.remove(full)
            full.close()
        _write_all(segment.fd, data)  # O_DSYNC: durable when it returns, one system call per group
        segment.size += len(data)
        self.fsyncs += 1

    def _open_segment(self, *, sync_directory: bool = True, room: int = 0) -> _Segment:
        if self._segments:
            self._segments[-1].sealed = True
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


# -- following a journal (the ingester's side) ------------------------------------------------------
def segment_path(directory: Path, owner: str, number: int) -> Path:
    return directory / f"{owner}-{number:06d}.jsonl"


def _segment_number(path: Path) -> int:
    return int(path.stem.rsplit("-", 1)[1])


_PROGRESS = struct.Struct("<4Q")
_PROGRESS_CHECK = 0x6F7574_63726F70  # the check word of a record, so that a torn read is seen as one
_MASK = (1 << 64) - 1


def _check(seq: int, segment: int, offset: int) -> int:
    return (seq * 0x9E3779B1 + segment * 0x85EBCA77 + offset * 0xC2B2AE3D + _PROGRESS_CHECK) & _MASK


class Progress:
    """``<owner>.progress``: how far the ingester has stored one journal.

    One record, (sequence number of the last line stored, segment number, byte offset in it of the next
    line), written by the ingester after each commit and read by the serving process (settling pending
    spend, ``flush``) and by an ingester resuming the journal. It lives in a shared mapping, so neither
    side makes a system call for it; a check word makes a record read while it was being written (a
    torn read) fail the check, and the reader reads again. It is a hint, never fsync'd: behind the
    truth after a crash, it only makes a replay longer, and replays count nothing twice.
    """

    SIZE = 4096

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        fd, self._map = open_mapped(path, self.SIZE, create=create)  # its blocks reserved: no SIGBUS
        os.close(fd)

    def read(self) -> tuple[int, int, int]:
        """(seq, segment, offset); (0, 1, 0) before anything was stored, or if the record is damaged (a
        replay from the start costs time, never a count)."""
        for _ in range(1000):
            seq, segment, offset, check = _PROGRESS.unpack_from(self._map, 0)
            if check == _check(seq, segment, offset):
                return seq, segment, offset
            if seq == segment == offset == check == 0:
                break
            # torn: the ingester is writing it right now; read again
        return 0, 1, 0

    @property
    def seq(self) -> int:
        return self.read()[0]

    def write(self, seq: int, segment: int, offset: int) -> None:
        _PROGRESS.pack_into(self._map, 0, seq, segment, offset, _check(seq, segment, offset))

    def close(self) -> None:
        self._map.close()


_CHUNK = 1 << 20


@dataclass
class Tail:
    """Follows one owner's segments in order, from its published progress, while they are being written.

    Each complete line is read exactly once per ``Tail`` and numbered as the journal numbered it (the
    first line is 1). A line is complete once its newline is there and no zero byte precedes it: bytes
    not yet copied into a mapped segment read as zeros, and a line never holds one. With ``final`` (its
    writer is gone for good) a torn last line is skipped instead of waited for.
    """

    directory: Path
    owner: str
    progress: Progress | None
    seq: int = 0
    segment: int = 1
    offset: int = 0
    _fd: int = -1
    _finished: list[int] = field(default_factory=list)  # segments read to their end, to delete on commit

    def __post_init__(self) -> None:
        if self.progress is not None:
            self.seq, self.segment, self.offset = self.progress.read()

    def read(self, limit: int, *, final: bool = False) -> list[bytes]:
        """Up to about ``limit`` lines not read before (a whole chunk of the file may overshoot it)."""
        lines: list[bytes] = []
        while len(lines) < limit:
            # Whether the segment is sealed is known before it is read: then that read sees all of it.
            sealed = final or segment_path(self.directory, self.owner, self.segment + 1).exists()
            if self._fd < 0:
                try:
                    self._fd = os.open(segment_path(self.directory, self.owner, self.segment), os.O_RDONLY)
                except FileNotFoundError:
                    later = self._later_segments()
                    if not later:
                        break
                    self._move_to(later[0])  # a gap: segments deleted, or a journal of an older release
                    continue
            got = self._read_lines()
            lines.extend(got)
            if got:
                continue
            if not sealed or not self._later_segments():
                break
            self._finished.append(self.segment)
            self._move_to(self.segment + 1)
        return lines

    def _read_lines(self) -> list[bytes]:
        size = _CHUNK
        while True:
            data = os.pread(self._fd, size, self.offset)
            nul = data.find(b"\0")
            complete = data if nul < 0 else data[:nul]
            end = complete.rfind(b"\n")
            if end >= 0:
                break
            if nul >= 0 or len(data) < size:
                return []  # nothing complete yet
            size *= 2  # one line longer than the chunk
        block = complete[: end + 1]
        self.offset += len(block)
        lines = block.split(b"\n")
        lines.pop()
        self.seq += len(lines)
        return lines

    def _later_segments(self) -> list[int]:
        numbers = (_segment_number(p) for p in self.directory.glob(f"{glob.escape(self.owner)}-*.jsonl"))
        return sorted(n for n in numbers if n > self.segment)

    def _move_to(self, number: int) -> None:
        self._close_fd()
        self.segment, self.offset = number, 0

    def _close_fd(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def commit(self) -> None:
        """Everything read so far is stored: publish it, and delete the segments read to their end."""
        if self.progress is not None:
            self.progress.write(self.seq, self.segment, self.offset)
        for number in self._finished:
            segment_path(self.directory, self.owner, number).unlink(missing_ok=True)
        self._finished = []

    def remove(self) -> None:
        """The writer is gone and every line is stored: delete the journal, its progress and its lock."""
        self._close_fd()
        for path in self.directory.glob(f"{glob.escape(self.owner)}-*.jsonl"):
            path.unlink(missing_ok=True)
        if self.progress is not None:
            self.progress.close()
        (self.directory / f"{self.owner}.progress").unlink(missing_ok=True)
        (self.directory / f"{self.owner}.lock").unlink(missing_ok=True)

    def close(self) -> None:
        self._close_fd()
        if self.progress is not None:
            self.progress.close()


# -- recovery --------------------------------------------------------------------------------------
@dataclass
class Orphan:
    """The journal of a process that is gone, claimed by this one (its lock held until ``done``)."""

    directory: Path
    owner: str
    lock_fd: int

    def __post_init__(self) -> None:
        path = self.directory / f"{self.owner}.progress"
        self.tail = Tail(self.directory, self.owner, Progress(path, create=False) if path.exists() else None)

    def lines(self, limit: int = 1 << 62) -> list[bytes]:
        """Up to about ``limit`` complete lines not yet stored, in order; [] once all were read. A torn last
        line (the process died inside ``write``, or copying into a mapped segment) is skipped, as are the
        zeros after the last line of a mapped segment."""
        return self.tail.read(limit, final=True)

    def done(self) -> None:
        self.tail.remove()
        os.close(self.lock_fd)


def claim_orphans(directory: Path, own_owner: str) -> list[Orphan]:
    """The journals of dead processes, each owner's locked for this process to drain.

    A journal's lock is held by its writer and by the ingester that follows it (which inherits the
    descriptor): it is an orphan only once both are gone."""
    if not directory.exists():
        return []
    owners = {path.stem.rsplit("-", 1)[0] for path in directory.glob("*.jsonl")}
    owners.update(path.stem for path in directory.glob("*.lock"))
    owners.update(path.stem for path in directory.glob("*.progress"))
    claimed: list[Orphan] = []
    for owner in sorted(owners - {own_owner}):
        try:
            fd = os.open(directory / f"{owner}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        claimed.append(Orphan(directory, owner, fd))
    return claimed
