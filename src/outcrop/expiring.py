"""Values remembered for a while: what a process reads often and another process may change (an application
profile's resolution, its tags). An entry is good for ``ttl`` seconds from when its reading began;
``forget`` drops one at once (a change made through this process). With ``limit``, past that many entries
all are dropped, so that keys callers make up cannot grow it without bound."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Expiring(Generic[K, V]):
    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic, limit: int | None = None) -> None:
        self.ttl, self.clock, self.limit = ttl, clock, limit
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K, now: float) -> V | None:
        """The value, if it was put less than ``ttl`` seconds before ``now``."""
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] > now else None

    def put(self, key: K, value: V, read_at: float) -> None:
        """Remember ``value``, read from ``read_at`` on (the time taken before reading it)."""
        if self.limit is not None and len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[key] = (read_at + self.ttl, value)

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
