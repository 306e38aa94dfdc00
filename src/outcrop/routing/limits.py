"""Capacity of one deployment: concurrent requests, requests per minute, tokens per minute.

Everything runs on one event loop, so the limits are plain counters and token buckets, with no locks
or semaphores: admission is a synchronous check-and-take that cannot interleave with another one.

* Concurrency: ``outstanding`` requests against ``max_concurrency``; a stream is outstanding until it ends.
* RPM and TPM: token buckets that refill continuously (capacity per minute, ``capacity / 60`` per second)
  and start full. A request takes one request token and an *estimate* of its tokens (input tokens plus
  the output it may produce); when its usage is known, the difference is trued up, so the TPM bucket may
  go into debt when a request used more than estimated, and later requests wait for it to refill.

0 means unlimited for each limit. Nothing is queued here: a request that does not fit is told so, with
the time after which it might (``retry_after``), and the router decides whether to wait.

With several workers (``outcrop serve --workers N``), a limited deployment's ``SharedCapacity`` keeps
the buckets and the count of outstanding requests in a file every worker maps (``outcrop.workers``), and
takes its lock around the check-and-take; the limits are then the server's, not each worker's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from outcrop.providers.messages import ChatRequest, EmbedRequest
from outcrop.providers.tokens import count_request, count_text
from outcrop.workers import Cell

Clock = Callable[[], float]


class TokenBucket:
    """``per_minute`` tokens a minute, at most ``per_minute`` saved up; the level may go negative (debt)."""

    def __init__(self, per_minute: int, clock: Clock = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.level = float(per_minute)
        self.updated = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(float(self.per_minute), self.level + (now - self.updated) * self.per_minute / 60)
        self.updated = now

    def available(self) -> float:
        self._refill()
        return self.level

    def fits(self, amount: float) -> bool:
        # A request larger than the whole bucket is admitted when the bucket is full, or it would never be.
        return self.available() >= min(amount, self.per_minute)

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` (capped at the bucket size) is available."""
        missing = min(amount, self.per_minute) - self.available()
        return max(0.0, missing * 60 / self.per_minute)


class SharedBucket(TokenBucket):
    """A bucket whose level lives in a shared ``Cell`` (``which``: 0 RPM, 1 TPM), on the system's monotonic
    clock, which every process reads alike. Reading it writes nothing; ``take`` belongs inside the cell's
    lock, with the check that it fits."""

    def __init__(self, per_minute: int, cell: Cell, which: int) -> None:  # no base init: the level is the
        self.per_minute = per_minute  # cell's, made full by the first worker that used it
        self.clock = time.monotonic
        self.cell = cell
        self.which = which

    def available(self) -> float:
        level, updated = self.cell.bucket(self.which)
        now = self.clock()
        if updated > now:  # written before a reboot, on another boot's clock: nothing is owed any more
            return float(self.per_minute)
        return min(float(self.per_minute), level + (now - updated) * self.per_minute / 60)

    def take(self, amount: float) -> None:
        self.cell.set_bucket(self.which, self.available() - amount, self.clock())


class Capacity:
    """The limits of one deployment and what is in use of them."""

    full_wait: float | None = None  # what ``retry_after`` says when every slot is taken

    def __init__(self, max_concurrency: int = 0, rpm: int = 0, tpm: int = 0, clock: Clock = time.monotonic) -> None:
        self.max_concurrency = max_concurrency
        self.outstanding = 0
        self.requests = TokenBucket(rpm, clock) if rpm else None
        self.tokens = TokenBucket(tpm, clock) if tpm else None

    @property
    def weight(self) -> int:
        """How much load this deployment takes relative to others (for least-outstanding choice)."""
        return self.max_concurrency or 1

    def load(self) -> float:
        return self.outstanding / self.weight

    def in_use(self) -> int:
        """Requests outstanding, against ``max_concurrency``."""
        return self.outstanding

    def has_room(self, estimate: int) -> bool:
        if self.max_concurrency and self.in_use() >= self.max_concurrency:
            return False
        if self.requests is not None and not self.requests.fits(1):
            return False
        return self.tokens is None or self.tokens.fits(estimate)

    def try_acquire(self, estimate: int) -> Lease | None:
        """Take room for one request of ``estimate`` tokens, or None when it does not fit now."""
        if not self.has_room(estimate):
            return None
        self.outstanding += 1
        if self.requests is not None:
            self.requests.take(1)
        if self.tokens is not None:
            self.tokens.take(estimate)
        return Lease(self, estimate)

    def retry_after(self, estimate: int) -> float | None:
        """Seconds until a bucket has room, or None when only a finishing request can make room (its release
        wakes the router's waiters)."""
        if self.max_concurrency and self.in_use() >= self.max_concurrency:
            return self.full_wait
        waits = [0.0]
        if self.requests is not None:
            waits.append(self.requests.wait_for(1))
        if self.tokens is not None:
            waits.append(self.tokens.wait_for(estimate))
        return max(waits)

    def release(self, lease: Lease, used_tokens: int | None) -> None:
        self.outstanding -= 1
        if used_tokens is not None and self.tokens is not None:
            self.tokens.take(used_tokens - lease.estimate)  # true-up: a refund when negative


# How often a request waiting for another worker's request to finish looks again (that worker's release
# cannot wake this one).
SHARED_POLL_SECONDS = 0.005


class SharedCapacity(Capacity):
    """The limits of one deployment, shared by the workers of a server through ``cell``.

    ``outstanding`` stays this worker's own (it orders the deployments by load); admission counts every
    worker's, from the cell."""

    full_wait = SHARED_POLL_SECONDS  # another worker's release cannot wake this one's waiters

    def __init__(self, max_concurrency: int, rpm: int, tpm: int, cell: Cell) -> None:
        super().__init__(max_concurrency)
        self.cell = cell
        self.requests = SharedBucket(rpm, cell, 0) if rpm else None
        self.tokens = SharedBucket(tpm, cell, 1) if tpm else None

    def in_use(self) -> int:
        return self.cell.outstanding()

    def try_acquire(self, estimate: int) -> Lease | None:
        if not self.has_room(estimate):  # read without the lock: a full deployment costs its waiters no lock
            return None
        with self.cell.limits.locked():  # and again under it, where the check and the take are one
            lease = super().try_acquire(estimate)
            if lease is not None:
                self.cell.add(1)
        return lease

    def release(self, lease: Lease, used_tokens: int | None) -> None:
        with self.cell.limits.locked():
            self.cell.add(-1)
            super().release(lease, used_tokens)


class Lease:
    """Room held by one request; ``release`` exactly once, with the tokens it really used if known."""

    def __init__(self, capacity: Capacity, estimate: int) -> None:
        self.capacity = capacity
        self.estimate = estimate
        self.released = False

    def release(self, used_tokens: int | None = None) -> None:
        if self.released:
            return
        self.released = True
        self.capacity.release(self, used_tokens)


# Output assumed for a request that sets no maximum, until its usage trues the estimate up.
DEFAULT_OUTPUT_ESTIMATE = 512


def estimate_chat(request: ChatRequest) -> int:
    """Tokens a chat request is expected to use: its input, plus its maximum output (or a default)."""
    return count_request(request) + (request.max_tokens or DEFAULT_OUTPUT_ESTIMATE)


def estimate_embedding(request: EmbedRequest) -> int:
    return sum(count_text(t) for t in request.texts)
