"""Capacity counters, token buckets with estimate-then-true-up, and the circuit breaker, on a fake clock."""

from __future__ import annotations

from outcrop.routing.health import BreakerState, CircuitBreaker
from outcrop.routing.limits import Capacity, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_concurrency_is_a_counter_released_once():
    c = Capacity(max_concurrency=2)
    a, b = c.try_acquire(0), c.try_acquire(0)
    assert a is not None and b is not None and c.try_acquire(0) is None
    a.release()
    a.release()
    assert c.outstanding == 1 and c.try_acquire(0) is not None


def test_rpm_bucket_refills_continuously():
    clock = Clock()
    c = Capacity(rpm=60, clock=clock)
    for _ in range(60):
        assert c.try_acquire(0) is not None
    assert c.try_acquire(0) is None
    assert c.retry_after(0) == 1.0  # one request a second
    clock.now = 1.0
    assert c.try_acquire(0) is not None


def test_tpm_estimate_is_trued_up_after_the_call():
    clock = Clock()
    c = Capacity(tpm=1000, clock=clock)
    lease = c.try_acquire(600)
    assert lease is not None and c.try_acquire(600) is None
    lease.release(used_tokens=100)  # refunds 500
    assert c.tokens is not None and c.tokens.available() == 900
    big = c.try_acquire(900)
    assert big is not None
    big.release(used_tokens=1500)  # used more than estimated: the bucket goes into debt
    assert c.tokens.available() == -600
    clock.now = 60.0
    assert c.tokens.available() == 400


def test_a_request_larger_than_the_bucket_fits_only_when_it_is_full():
    bucket = TokenBucket(100, Clock())
    assert bucket.fits(5000)
    bucket.take(1)
    assert not bucket.fits(5000)


def test_breaker_opens_after_consecutive_failures_and_probes_once_after_cooldown():
    clock = Clock()
    b = CircuitBreaker(threshold=3, cooldown_s=10, clock=clock)
    b.failure()
    b.failure()
    b.success()  # resets the count
    for _ in range(3):
        b.failure()
    assert b.state is BreakerState.OPEN and not b.allows()
    clock.now = 10.0
    assert b.state is BreakerState.HALF_OPEN and b.allows()
    b.start()
    assert not b.allows()  # one probe at a time
    b.failure()
    assert b.state is BreakerState.OPEN and b.seconds_until_probe() == 10.0
    clock.now = 20.0
    b.start()
    b.success()
    assert b.state is BreakerState.CLOSED and b.consecutive_failures == 0


def test_throttling_leaves_the_breaker_as_it_is():
    b = CircuitBreaker(threshold=1, cooldown_s=1, clock=Clock())
    b.neutral()
    assert b.state is BreakerState.CLOSED
