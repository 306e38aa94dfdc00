"""The router on its own: order, spill-over, waiting for room, failover, client errors, exhaustion."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from outcrop.config import Config, Deployment, Routing
from outcrop.control.catalog import Catalog
from outcrop.errors import ServiceUnavailable, Throttled, ValidationError
from outcrop.providers.registry import Providers
from outcrop.routing import Router
from outcrop.runtime.chaos import Chaos
from outcrop.runtime.invoke import InvocationRecord
from outcrop.runtime.resolve import Candidate, Resolution

MODEL = "amazon.nova-lite-v1:0"
REGIONS = ("us-west-2", "us-east-1", "us-east-2")


def resolution() -> Resolution:
    model = Catalog.load().models[MODEL]
    return Resolution(model, tuple(Candidate(r, MODEL) for r in REGIONS))


def router(**routing: Any) -> Router:
    config = Config(deployments=(Deployment(model=MODEL, max_concurrency=1),), routing=Routing(**routing))
    return Router(config, Providers(), Chaos())


def record() -> InvocationRecord:
    return InvocationRecord("r", "123456789012", "us-east-1", "Converse", MODEL, None)


async def served(r: Router, failing: dict[str, Exception] | None = None, hold: float = 0.0) -> tuple[str, int]:
    rec = record()

    async def call(provider: Any, target: Any) -> str:
        if failing and target.region in failing:
            raise failing[target.region]
        await asyncio.sleep(hold)
        return str(target.region)

    region = await r.run("us-east-1", resolution(), rec, call)
    return region, rec.attempts


def test_source_region_first_then_spill_over_by_load_then_throttle():
    async def main() -> list[Any]:
        r = router()
        return await asyncio.gather(*(served(r, hold=0.05) for _ in range(4)), return_exceptions=True)

    results = asyncio.run(main())
    assert [x[0] for x in results[:3]] == ["us-east-1", "us-west-2", "us-east-2"]
    assert isinstance(results[3], Throttled)


def test_a_short_wait_takes_the_room_a_finishing_request_frees():
    async def main() -> list[Any]:
        r = router(max_wait_ms=1000)
        return await asyncio.gather(*(served(r, hold=0.05) for _ in range(6)))

    assert sorted(x[0] for x in asyncio.run(main())) == sorted(REGIONS * 2)


def test_failover_tries_each_once_and_passes_on_one_kind_of_failure():
    r = router()
    assert asyncio.run(served(r, {"us-east-1": ServiceUnavailable("down")})) == ("us-west-2", 2)
    every = {region: ServiceUnavailable("down") for region in REGIONS}
    with pytest.raises(ServiceUnavailable):
        asyncio.run(served(r, every))
    mixed = {**every, "us-east-2": Throttled("busy")}
    with pytest.raises(Throttled):
        asyncio.run(served(r, mixed))


def test_a_client_error_is_never_retried():
    r = router()
    rec = record()

    async def call(provider: Any, target: Any) -> str:
        raise ValidationError("bad")

    with pytest.raises(ValidationError):
        asyncio.run(r.run("us-east-1", resolution(), rec, call))
    assert rec.attempts == 1


def test_ordered_strategy_follows_the_profile():
    assert asyncio.run(served(router(strategy="ordered")))[0] == "us-west-2"


def test_the_token_estimate_is_counted_only_where_a_tpm_limit_needs_it():
    counted: list[int] = []

    def estimate() -> int:
        counted.append(1)
        return 600

    async def call(provider: Any, target: Any) -> str:
        return str(target.region)

    async def main(r: Router) -> list[Any]:
        return [await r.run("us-east-1", resolution(), record(), call, estimate) for _ in range(2)]

    # No TPM limit: the request's tokens are never counted.
    assert asyncio.run(main(router())) == ["us-east-1", "us-east-1"]
    assert counted == []
    # A TPM limit of 1,000: the estimate is counted once per request, and the second request (600 more
    # than the 400 left) goes to the next Region.
    limited = Config(deployments=(Deployment(model=MODEL, tpm=1000),), routing=Routing())
    assert asyncio.run(main(Router(limited, Providers(), Chaos()))) == ["us-east-1", "us-west-2"]
    assert counted == [1, 1]


def test_one_candidate_is_tried_even_with_its_breaker_open():
    r = router(breaker_failures=1, breaker_cooldown_ms=60_000)
    single = Resolution(resolution().model, (Candidate("us-east-1", MODEL),))

    async def failing(provider: Any, target: Any) -> str:
        raise ServiceUnavailable("down")

    async def ok(provider: Any, target: Any) -> str:
        return "served"

    async def main() -> str:
        with pytest.raises(ServiceUnavailable):
            await r.run("us-east-1", single, record(), failing)
        return await r.run("us-east-1", single, record(), ok)

    assert asyncio.run(main()) == "served"
