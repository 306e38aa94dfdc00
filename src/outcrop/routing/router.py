"""Where an invocation runs: candidate order, capacity, failover within one deadline, health.

A resolved invocation has candidate (Region, model) pairs (``outcrop.runtime.resolve``); each pair is
served by one or more configured deployments (``Config.deployments_for``), each with its own capacity
(``limits``) and circuit breaker (``health``). One invocation:

1. Order the deployments not yet tried, by the configured strategy:
   ``source-first`` (default): the caller's Region first, the others after; within each, least
   outstanding requests per unit of capacity, then the profile's order. ``least-loaded``: all on equal
   terms by outstanding/capacity, the source Region winning ties. ``ordered``: the profile's order.
   Deployments whose breaker is open are left out, unless every one left is open: then all are tried
   (as Envoy's "panic" routing does), since refusing at once would turn one bad Region into an outage.
2. Take the first that has room (concurrency, RPM, TPM estimate). If none has, wait for room up to
   ``max_wait_ms`` (at most ``max_waiting`` requests wait; the rest are refused at once), then answer
   ThrottlingException. Nothing else queues, so memory does not grow under overload.
3. Call it (chaos first, then the provider). Throttling, 5xx, model errors, timeouts and connection
   failures move on to the next deployment until all have been tried; a client error (validation,
   access) is raised at once, never retried. Every attempt shares one deadline (``total_timeout_ms``).
   For a stream the attempt ends with its first event (the runtime primes it), so failover happens
   before the first byte reaches the client and never after.
4. When all have failed: the failure itself if every attempt failed the same way (a direct call
   keeps its own error), else ThrottlingException, as Bedrock answers when no Region can serve.

State is in the memory of one server process (one per worker when ``workers`` > 1), but for the limits
of deployments that have any, which the workers of a server share (``SharedCapacity``, given
``limits``). Each worker's breakers learn on their own, as each Envoy's do.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from outcrop.config import Config, Deployment
from outcrop.deadlines import within
from outcrop.errors import (
    InternalServer,
    ModelError,
    ModelNotReady,
    ModelStreamError,
    ModelTimeout,
    ServiceError,
    ServiceUnavailable,
    Throttled,
)
from outcrop.providers.base import Provider, Target
from outcrop.providers.messages import Metadata, StreamEvent
from outcrop.providers.registry import Providers
from outcrop.routing.health import CircuitBreaker
from outcrop.routing.limits import Capacity, Clock, Lease, SharedCapacity

if TYPE_CHECKING:
    from outcrop.runtime.chaos import Chaos
    from outcrop.runtime.resolve import Candidate, Resolution
    from outcrop.workers import SharedLimits

T = TypeVar("T")
# The tokens a request is expected to use, for TPM limits: a number, or a function that counts them, called
# only when a candidate deployment has a TPM limit (counting a long prompt is not free).
Estimate = int | Callable[[], int]
TOO_MANY_REQUESTS = "Too many requests, please wait before trying again."
# Failures that say "try elsewhere" without saying the deployment is unwell.
CAPACITY_ERRORS = (Throttled, ModelNotReady)
FAILURE_ERRORS = (ServiceUnavailable, InternalServer, ModelTimeout, ModelStreamError)


class Invocation(Protocol):
    """What the router reads and writes of the runtime's ``InvocationRecord``."""

    served_region: str | None
    attempts: int


def is_retriable(error: ServiceError) -> bool:
    """May another deployment succeed where this one failed? Never for a client error."""
    if isinstance(error, CAPACITY_ERRORS + FAILURE_ERRORS):
        return True
    if isinstance(error, ModelError):
        original = error.fields.get("originalStatusCode")
        return original is None or int(original) >= 500
    return error.status >= 500


def is_capacity(error: ServiceError) -> bool:
    return isinstance(error, CAPACITY_ERRORS)


@dataclass
class Deployed:
    """One deployment serving one (Region, model) pair, with its capacity, health and counters."""

    region: str
    model_id: str
    name: str
    target: Target
    capacity: Capacity
    breaker: CircuitBreaker
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def deployment(self) -> Deployment:
        return self.target.deployment


class Router:
    def __init__(self, config: Config, providers: Providers, chaos: Chaos, clock: Clock = time.monotonic,
                 limits: SharedLimits | None = None) -> None:
        self.settings = config.routing
        self.limits = limits
        self.config = config
        self.providers = providers
        self.chaos = chaos
        self.clock = clock
        self.pools: dict[tuple[str, str], list[Deployed]] = {}
        # Per distinct candidate list of a resolution: its deployments, and whether any has a TPM limit.
        self._deployed: dict[tuple[Candidate, ...], tuple[list[Deployed], bool]] = {}
        self.failovers = 0
        self.rejections: Counter[str] = Counter()
        self.waiting = 0
        self._room = asyncio.Event()

    # -- candidates ------------------------------------------------------------------------------------
    def pool(self, region: str, model_id: str) -> list[Deployed]:
        """The deployments of one (Region, model) pair, created on first use and kept for their state."""
        pool = self.pools.get((region, model_id))
        if pool is None:
            s = self.settings
            pool = []
            for d in self.config.deployments_for(region, model_id):
                place = next((i for i, c in enumerate(self.config.deployments) if c is d), None)
                name = d.name or (d.backend if place is None else f"{d.backend}-{place}")
                pool.append(Deployed(
                    region, model_id, name, Target(region, model_id, d), self._capacity(region, model_id, name, d),
                    CircuitBreaker(s.breaker_failures, s.breaker_cooldown_ms / 1000, self.clock),
                ))
            self.pools[(region, model_id)] = pool
        return pool

    def _capacity(self, region: str, model_id: str, name: str, d: Deployment) -> Capacity:
        if self.limits is not None and (d.max_concurrency or d.rpm or d.tpm):
            cell = self.limits.cell(region, model_id, name, d.rpm, d.tpm)
            if cell is not None:
                return SharedCapacity(d.max_concurrency, d.rpm, d.tpm, cell)
        return Capacity(d.max_concurrency, d.rpm, d.tpm, self.clock)

    def _candidates(self, resolution: Resolution) -> tuple[list[Deployed], bool]:
        """The deployments serving a resolution's candidates, in its order (pools never change once made),
        and whether any of them counts tokens."""
        found = self._deployed.get(resolution.candidates)
        if found is None:
            out: list[Deployed] = []
            for c in resolution.candidates:
                out.extend(self.pool(c.region, c.model_id))
            found = self._deployed[resolution.candidates] = (out, any(d.capacity.tokens is not None for d in out))
        return found

    def order(self, source_region: str, deployed: list[Deployed], rank: dict[int, int]) -> list[Deployed]:
        strategy = self.settings.strategy
        if strategy == "ordered":
            return sorted(deployed, key=lambda d: rank[id(d)])
        if strategy == "least-loaded":
            return sorted(deployed, key=lambda d: (d.capacity.load(), d.region != source_region, rank[id(d)]))
        return sorted(deployed, key=lambda d: (d.region != source_region, d.capacity.load(), rank[id(d)]))

    # -- invocation ------------------------------------------------------------------------------------
    async def run(
        self, source_region: str, resolution: Resolution, record: Invocation,
        call: Callable[[Provider, Target], Awaitable[T]], estimate: Estimate = 0,
    ) -> T:
        """Run a unary call where it fits; its room is released with the tokens it really used."""
        result, _chosen, lease = await self._route(source_region, resolution, record, call, estimate)
        usage = getattr(result, "usage", None)
        self._release(lease, getattr(usage, "quota_tokens", None))
        return result

    async def open_stream(
        self, source_region: str, resolution: Resolution, record: Invocation,
        start: Callable[[Provider, Target], Awaitable[AsyncIterator[StreamEvent]]], estimate: Estimate = 0,
    ) -> AsyncIterator[StreamEvent]:
        """``start`` returns a primed stream; it holds its room until it ends (or the client leaves)."""
        events, chosen, lease = await self._route(source_region, resolution, record, start, estimate)
        return self._held(events, chosen, lease)

    async def _held(self, events: AsyncIterator[StreamEvent], chosen: Deployed, lease: Lease) -> AsyncIterator[StreamEvent]:
        used: int | None = None
        try:
            async for event in events:
                if isinstance(event, Metadata):
                    used = event.usage.quota_tokens
                yield event
        except ServiceError as e:
            # Past the first event there is no failover, but the breaker still learns from it.
            if is_retriable(e) and not is_capacity(e):
                chosen.breaker.failure()
                chosen.outcomes["failure"] += 1
            raise
        finally:
            self._release(lease, used)

    async def _route(
        self, source_region: str, resolution: Resolution, record: Invocation,
        call: Callable[[Provider, Target], Awaitable[T]], estimate: Estimate,
    ) -> tuple[T, Deployed, Lease]:
        s = self.settings
        started = self.clock()
        deadline = started + s.total_timeout_ms / 1000
        wait_until = started + s.max_wait_ms / 1000
        candidates, counts_tokens = self._candidates(resolution)
        tokens = (estimate() if callable(estimate) else estimate) if counts_tokens else 0
        rank: dict[int, int] | None = None
        tried: set[int] = set()
        failures: list[ServiceError] = []
        try:
            while True:
                left = [d for d in candidates if id(d) not in tried] if tried else candidates
                if not left:
                    raise self._exhausted(failures)
                if len(left) == 1:
                    order = left  # healthy or not, the only one left is the one to try
                else:
                    if rank is None:
                        rank = {id(d): i for i, d in enumerate(candidates)}
                    healthy = [d for d in left if d.breaker.allows()]
                    order = self.order(source_region, healthy or left, rank)
                chosen, lease = self._admit(order, tokens)
                if chosen is None or lease is None:
                    pause = self._pause(order, tokens, min(wait_until, deadline))
                    if pause is None:
                        self.rejections["capacity"] += 1
                        raise self._exhausted(failures, full=True)
                    await self._wait_for_room(pause)
                    continue
                if failures:
                    self.failovers += 1
                record.attempts += 1
                record.served_region = chosen.region
                try:
                    result = await self._attempt(chosen, call, deadline)
                except ServiceError as e:
                    self._release(lease, 0)  # a failed call used nothing (and a stream never started)
                    if not is_retriable(e):
                        chosen.breaker.neutral()
                        chosen.outcomes["client_error"] += 1
                        raise
                    if is_capacity(e):
                        chosen.breaker.neutral()
                        chosen.outcomes["throttled"] += 1
                    else:
                        chosen.breaker.failure()
                        chosen.outcomes["failure"] += 1
                    failures.append(e)
                    tried.add(id(chosen))
                    if self.clock() >= deadline:
                        self.rejections["deadline"] += 1
                        raise self._deadline(failures) from None
                    continue
                except BaseException:
                    self._release(lease, 0)
                    chosen.breaker.neutral()
                    raise
                chosen.breaker.success()
                chosen.outcomes["success"] += 1
                return result, chosen, lease
        finally:
            # A failure's traceback holds this frame, whose list holds the failure: emptied, a failed
            # invocation's objects are freed at once instead of waiting in a cycle for the collector.
            failures.clear()

    def _admit(self, order: list[Deployed], estimate: int) -> tuple[Deployed | None, Lease | None]:
        for d in order:
            lease = d.capacity.try_acquire(estimate)
            if lease is not None:
                d.breaker.start()
                return d, lease
        return None, None

    async def _attempt(self, chosen: Deployed, call: Callable[[Provider, Target], Awaitable[T]], deadline: float) -> T:
        try:
            with within(deadline - self.clock()):
                await self.chaos.apply(chosen.region, chosen.model_id)
                return await call(self.providers.for_deployment(chosen.deployment), chosen.target)
        except TimeoutError:
            raise ModelTimeout(
                f"The model did not respond within outcrop's routing deadline of {self.settings.total_timeout_ms} ms."
            ) from None

    # -- waiting for room ------------------------------------------------------------------------------
    def _pause(self, order: list[Deployed], estimate: int, until: float) -> float | None:
        """How long to wait before looking again, or None when the request must be refused now."""
        budget = until - self.clock()
        if budget <= 0 or self.waiting >= self.settings.max_waiting:
            return None
        refills = [w for d in order if (w := d.capacity.retry_after(estimate)) is not None]
        return min([budget, *refills]) if refills else budget

    async def _wait_for_room(self, seconds: float) -> None:
        room = self._room
        self.waiting += 1
        try:
            async with asyncio.timeout(max(seconds, 0.001)):
                await room.wait()
        except TimeoutError:
            pass  # a bucket may have refilled: look again
        finally:
            self.waiting -= 1

    def _release(self, lease: Lease, used_tokens: int | None) -> None:
        if lease.released:
            return
        lease.release(used_tokens)
        if self.waiting:
            self._room.set()
            self._room = asyncio.Event()

    # -- outcomes --------------------------------------------------------------------------------------
    def _exhausted(self, failures: list[ServiceError], full: bool = False) -> ServiceError:
        """All tried (or the rest full): one kind of failure is passed on as it is, anything else throttles."""
        if failures and not full and all(f.code == failures[-1].code for f in failures):
            return failures[-1]
        return Throttled(TOO_MANY_REQUESTS)

    def _deadline(self, failures: list[ServiceError]) -> ServiceError:
        return ModelTimeout(
            f"The invocation did not complete within {self.settings.total_timeout_ms} ms "
            f"({len(failures)} attempt{'s' if len(failures) != 1 else ''} failed)."
        )

    # -- state -----------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The state of every deployment used so far (``GET /_outcrop/routing``)."""
        deployments = []
        for pool in self.pools.values():
            for d in pool:
                c, b = d.capacity, d.breaker
                entry: dict[str, Any] = {
                    "region": d.region, "model": d.model_id, "deployment": d.name, "backend": d.deployment.backend,
                    "breaker": b.state.value, "consecutiveFailures": b.consecutive_failures,
                    "timesOpened": b.times_opened, "outstanding": c.outstanding,
                    "maxConcurrency": d.deployment.max_concurrency, "rpm": d.deployment.rpm, "tpm": d.deployment.tpm,
                    "attempts": dict(sorted(d.outcomes.items())),
                }
                if c.requests is not None:
                    entry["rpmAvailable"] = int(c.requests.available())
                if c.tokens is not None:
                    entry["tpmAvailable"] = int(c.tokens.available())
                if b.seconds_until_probe():
                    entry["probeInMs"] = int(b.seconds_until_probe() * 1000)
                deployments.append(entry)
        s = self.settings
        return {
            "strategy": s.strategy, "maxWaitMs": s.max_wait_ms, "totalTimeoutMs": s.total_timeout_ms,
            "breakerFailures": s.breaker_failures, "breakerCooldownMs": s.breaker_cooldown_ms,
            "failovers": self.failovers, "rejections": dict(sorted(self.rejections.items())),
            "waiting": self.waiting, "deployments": deployments,
        }
