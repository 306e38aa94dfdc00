"""Changes one worker makes, seen at once by the other workers of the same server.

The workers of one ``outcrop serve --workers N`` each keep caches that a change made through another
worker would leave stale until they expire: an application profile's resolution (1 s: a deleted profile
went on resolving), a profile's tags for metering and budgets (5 s), the chaos rules (250 ms). So each
such change bumps a counter for its kind, in a small file of the data directory that every worker maps
into its memory, and a worker compares the counter with the one it last saw before it trusts its cache:
an 8-byte read, no system call, on each invocation. Bumps (rare: a Delete, a Tag, a chaos rule; a few
times a second, the ingesters' stores of spend against a budget) take a lock on the file, so that two at
once both count.

The counter is bumped after the change is committed, and a worker that sees it move drops its cache, so
its next read of the database sees the change. Servers that share only a database (replicas on
PostgreSQL, each with its own data directory) do not share the file; between them the caches' expiry
times still apply, as Bedrock's own changes are eventually consistent.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from pathlib import Path

from outcrop.mapped import locked, open_mapped

PROFILES = 0  # an application profile was deleted
TAGS = 1  # a profile's tags changed
CHAOS = 2  # the chaos rules changed
SNAPSHOT = 3  # a scrape asks every worker for its state (``outcrop.workers.Snapshots``)
SPEND = 4  # an ingester stored events of a profile with a budget (``outcrop.metering.budgets.Spend``)

_COUNTER = struct.Struct("=Q")
_SIZE = 64  # bytes: room for eight counters


class Generations:
    """One counter per kind of change; in a file shared by the server's workers, or (no file) in memory."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._fd: int | None = None
        self._map: mmap.mmap | bytearray
        if path is None:
            self._map = bytearray(_SIZE)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd, self._map = open_mapped(path, _SIZE)

    def __getitem__(self, kind: int) -> int:
        return _COUNTER.unpack_from(self._map, kind * 8)[0]

    def bump(self, kind: int) -> int:
        """Count one change of ``kind``; returns the new count."""
        with locked(self._fd) if self._fd is not None else contextlib.nullcontext():
            count = self[kind] + 1
            _COUNTER.pack_into(self._map, kind * 8, count)
            return count

    def close(self) -> None:
        if self._fd is not None:
            self._map.close()  # type: ignore[union-attr]
            os.close(self._fd)
            self._fd = None
            self._map = bytearray(_SIZE)


class Watch:
    """Whether one kind of change happened since this watch last looked (for one cache of one process)."""

    __slots__ = ("_generations", "_kind", "_seen")

    def __init__(self, generations: Generations, kind: int) -> None:
        self._generations = generations
        self._kind = kind
        self._seen = generations[kind]

    def changed(self) -> bool:
        now = self._generations[self._kind]
        if now == self._seen:
            return False
        self._seen = now
        return True

    def bump(self) -> None:
        """A change of this kind made here: the other workers see it; this watch does not report it back."""
        self._generations.bump(self._kind)
        self.changed()
