"""Application profiles are resolved from the database at most once per PROFILE_TTL: a Delete made through
this process is seen at once, one made elsewhere (another worker, another server) within the TTL, and a
profile not found is never remembered."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import delete

from outcrop.app import create_app
from outcrop.config import Config
from outcrop.context import RequestContext
from outcrop.errors import ValidationError
from outcrop.runtime.resolve import Resolver
from outcrop.store.schema import inference_profiles

ACCOUNT, REGION = "123456789012", "us-east-1"
SOURCE = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ctx() -> RequestContext:
    return RequestContext(request_id="r", account=ACCOUNT, region=REGION)


@pytest.fixture
def app(tmp_path):
    app = create_app(Config(data_dir=tmp_path, metering=False))
    app.start()
    yield app
    app.stop()


def _create(app, name: str) -> str:
    params = {"inferenceProfileName": name, "modelSource": {"copyFrom": SOURCE}}
    return asyncio.run(app.profiles.create(ctx(), params))["inferenceProfileArn"]


def _delete_elsewhere(app, profile_id: str) -> None:
    """As another worker would: straight in the database, this process not told."""
    app.store.write_sync(lambda conn: conn.execute(delete(inference_profiles).where(
        inference_profiles.c.profile_id == profile_id)))


def test_a_profile_deleted_elsewhere_resolves_until_the_ttl_then_is_invalid(app):
    arn = _create(app, "cached")
    clock = Clock()
    resolver = Resolver(app.catalog, app.store, ttl=1.0, clock=clock)
    first = asyncio.run(resolver.resolve(ctx(), arn))
    assert first.profile_arn == arn and len(first.candidates) >= 2  # the source profile's Regions
    _delete_elsewhere(app, arn.rsplit("/", 1)[-1])
    clock.now += 0.5
    assert asyncio.run(resolver.resolve(ctx(), arn)) == first  # within the TTL: not read again
    clock.now += 0.6
    with pytest.raises(ValidationError, match=r"The provided model identifier is invalid\."):
        asyncio.run(resolver.resolve(ctx(), arn))


def test_forget_makes_a_deletion_through_this_process_immediate(app):
    arn = _create(app, "forgotten")
    resolver = Resolver(app.catalog, app.store, ttl=3600, clock=Clock())
    asyncio.run(resolver.resolve(ctx(), arn))
    profile_id = arn.rsplit("/", 1)[-1]
    _delete_elsewhere(app, profile_id)
    resolver.forget(ACCOUNT, REGION, profile_id)
    with pytest.raises(ValidationError):
        asyncio.run(resolver.resolve(ctx(), profile_id))


def test_a_profile_not_found_is_not_remembered(app):
    resolver = Resolver(app.catalog, app.store, ttl=3600, clock=Clock())
    missing = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:application-inference-profile/abcdefghijkl"
    with pytest.raises(ValidationError):
        asyncio.run(resolver.resolve(ctx(), missing))
    arn = _create(app, "made-later")  # say, by another worker, right after
    assert asyncio.run(resolver.resolve(ctx(), arn)).profile_arn == arn


def test_the_delete_operation_tells_the_runtime(app):
    arn = _create(app, "deleted-here")
    runtime = app.runtime
    runtime.resolver._applications.ttl = 3600  # long enough that only the Delete can make it go
    asyncio.run(runtime.resolver.resolve(ctx(), arn))
    handler = app.handlers[("bedrock", "DeleteInferenceProfile")]
    asyncio.run(handler(ctx(), {"inferenceProfileIdentifier": arn}))
    with pytest.raises(ValidationError):
        asyncio.run(runtime.resolver.resolve(ctx(), arn))
