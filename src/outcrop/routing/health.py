"""A circuit breaker per deployment, learned from real traffic (no synthetic health checks).

    closed ──(``threshold`` consecutive failures)──▶ open ──(cooldown elapsed)──▶ half-open
      ▲                                               ▲                              │
      └──────────────(the probe succeeds)─────────────┼──────(the probe fails)───────┘

* closed: every request may go; a success resets the failure count.
* open: the router skips the deployment (unless every candidate is open: see ``outcrop.routing.router``).
* half-open: after the cooldown, exactly one request at a time goes through as a probe; its success
  closes the breaker, its failure opens it for another cooldown.

Failures are what says the deployment is unwell: 5xx, model errors, timeouts, connection failures.
Throttling is a capacity signal, not ill health, and a client error says nothing about the backend:
both are ``neutral`` and leave the state as it is (a probe that was throttled frees the probe slot).
"""

from __future__ import annotations

import time
from enum import Enum

from outcrop.routing.limits import Clock


class BreakerState(Enum):
    CLOSED = "closed"
    HALF_OPEN = "half-open"
    OPEN = "open"


# Gauge values in /metrics.
STATE_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class CircuitBreaker:
    def __init__(self, threshold: int, cooldown_s: float, clock: Clock = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.opened_at = 0.0
        self.probing = False
        self.times_opened = 0

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self.clock() - self.opened_at >= self.cooldown_s:
            self._state = BreakerState.HALF_OPEN
        return self._state

    def allows(self) -> bool:
        """May a request go now? (Does not take the probe slot: ``start`` does.)"""
        state = self.state
        return state is BreakerState.CLOSED or (state is BreakerState.HALF_OPEN and not self.probing)

    def start(self) -> None:
        """A request is sent; in half-open it is the probe."""
        if self.state is BreakerState.HALF_OPEN:
            self.probing = True

    def success(self) -> None:
        self._state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.probing = False

    def failure(self) -> None:
        self.consecutive_failures += 1
        if self.state is BreakerState.HALF_OPEN or self.consecutive_failures >= self.threshold:
            if self._state is not BreakerState.OPEN:
                self.times_opened += 1
            self._state = BreakerState.OPEN
            self.opened_at = self.clock()
        self.probing = False

    def neutral(self) -> None:
        self.probing = False

    def seconds_until_probe(self) -> float:
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.cooldown_s - (self.clock() - self.opened_at))
