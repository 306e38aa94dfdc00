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
