"""modelId → the foundation model and the (Region, model) pairs that may serve it.

Accepted, as Bedrock accepts them: a foundation-model ID or ARN; a system profile ID or ARN; an
application profile ARN or ID. A profile's candidates come from stored data (the catalogue's
destinations for a system profile, the stored model ARNs of an application profile), never from
parsing the profile's own ARN. Anything unknown, deleted, or of another account, Region or partition
is "The provided model identifier is invalid."; a model offered only through profiles, called by its
own ID, gets Bedrock's on-demand error.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import orjson
from sqlalchemy import Connection, bindparam, select

from outcrop.context import RequestContext
from outcrop.control.catalog import Catalog, FoundationModel, partition_of
from outcrop.control.identifiers import APPLICATION_ID, PROFILE_ARN, application_arn
from outcrop.errors import ValidationError
from outcrop.expiring import Expiring
from outcrop.generations import Watch
from outcrop.store.engine import Store
from outcrop.store.schema import inference_profiles

INVALID_MESSAGE = "The provided model identifier is invalid."
# How long an application profile's resolution is reused without reading the database again. Profiles
# never change once created; a Delete made through this process is seen at once (``forget``), one made
# through another worker of this server at once too (``outcrop.generations``), and one made through a
# server with another data directory within this many seconds (AWS's own Delete is eventually consistent).
# A profile not found is never remembered: one just created elsewhere resolves on its first invocation.
PROFILE_TTL = 1.0
MAX_REMEMBERED = 10_000
MODEL_ARN = re.compile(r"arn:[a-z-]+:bedrock:(?P<region>[0-9a-z-]*)::foundation-model/(?P<id>.+)")


def invalid_identifier() -> ValidationError:
    return ValidationError(INVALID_MESSAGE)


def on_demand_unsupported(model_id: str) -> ValidationError:
    return ValidationError(
        f"Invocation of model ID {model_id} with on-demand throughput isn\u2019t supported. Retry your "
        "request with the ID or ARN of an inference profile that contains this model."
    )


@dataclass(frozen=True)
class Candidate:
    region: str
    model_id: str


@dataclass(frozen=True)
class Resolution:
    model: FoundationModel
    candidates: tuple[Candidate, ...]
    # The profile invoked, if any (for usage records and logs).
    profile_arn: str | None = None


class Resolver:
    def __init__(self, catalog: Catalog, store: Store, ttl: float = PROFILE_TTL,
                 clock: Callable[[], float] = time.monotonic, deletions: Watch | None = None) -> None:
        """``deletions``: profiles deleted through another worker of this server (``outcrop.generations``)."""
        self.catalog = catalog
        self.store = store
        self._deletions = deletions
        self._applications: Expiring[tuple[str, str, str], Resolution] = Expiring(ttl, clock, MAX_REMEMBERED)
        # A foundation model's resolution in a Region depends on the catalogue alone, which does not change.
        self._models: dict[tuple[str, str], tuple[Resolution, bool]] = {}  # and: served on demand?

    def forget(self, account: str, region: str, profile_id: str) -> None:
        """An application profile was deleted: stop resolving it now."""
        self._applications.forget((account, region, profile_id))

    async def resolve(self, ctx: RequestContext, model_id: str, invocation: bool = True) -> Resolution:
        """``invocation=False`` (CountTokens) accepts profile-only models by their own ID."""
        arn = _arn_parts(model_id) if len(model_id) <= _REMEMBERED_ARN else _parse_arn(model_id)
        if arn is not None:
            partition, region, account, kind, resource_id = arn
            if partition != partition_of(ctx.region) or region != ctx.region:
                raise invalid_identifier()
            if kind == "foundation-model":
                if account:
                    raise invalid_identifier()
                return self._foundation(ctx, resource_id, invocation)
            if account not in ("", ctx.account):
                raise invalid_identifier()
            if kind == "inference-profile":
                return self._system(ctx, resource_id)
            return await self._application(ctx, resource_id)
        if model_id.startswith("arn:"):
            raise invalid_identifier()
        if model_id in self.catalog.models:
            return self._foundation(ctx, model_id, invocation)
        if APPLICATION_ID.fullmatch(model_id):
            return await self._application(ctx, model_id)
        return self._system(ctx, model_id)

    def _foundation(self, ctx: RequestContext, model_id: str, invocation: bool) -> Resolution:
        key = (ctx.region, model_id)
        known = self._models.get(key)
        if known is None:
            model = self.catalog.model_in(ctx.region, model_id)
            if model is None:
                raise invalid_identifier()
            known = (Resolution(model, (Candidate(ctx.region, model_id),)),
                     "ON_DEMAND" in model.inference_types_in(ctx.region))
            if len(self._models) < MAX_REMEMBERED:  # the catalogue's (Region, model) pairs: a bounded set
                self._models[key] = known
        resolution, on_demand = known
        if invocation and not on_demand:
            raise on_demand_unsupported(model_id)
        return resolution

    def _system(self, ctx: RequestContext, profile_id: str) -> Resolution:
        profile = self.catalog.system_profile(ctx.region, profile_id)
        model = self.catalog.models.get(profile.model_id) if profile else None
        if profile is None or model is None:
            raise invalid_identifier()
        candidates = tuple(Candidate(r, model.model_id) for r in profile.destinations)
        return Resolution(model, candidates, profile.arn(ctx.account))

    async def _application(self, ctx: RequestContext, profile_id: str) -> Resolution:
        key = (ctx.account, ctx.region, profile_id)
        if self._deletions is not None and self._deletions.changed():
            self._applications.clear()  # a profile was deleted through another worker: read them all again
        now = self._applications.clock()
        resolution = self._applications.get(key, now)
        if resolution is None:
            resolution = await self._read_application(ctx, profile_id)
            self._applications.put(key, resolution, now)
        return resolution

    async def _read_application(self, ctx: RequestContext, profile_id: str) -> Resolution:
        row = await self.store.read(lambda conn: _profile_row(conn, ctx, profile_id))
        if row is None:
            raise invalid_identifier()
        arns, source_arn = row
        candidates: list[Candidate] = []
        model: FoundationModel | None = None
        for arn in arns:
            m = MODEL_ARN.fullmatch(arn)
            found = self.catalog.models.get(m["id"]) if m else None
            if m is None or found is None:
                continue
            model = found
            if m["region"]:
                candidates.append(Candidate(m["region"], found.model_id))
            else:  # the Region-less ARN of a global profile: wherever its source profile routes
                source = PROFILE_ARN.fullmatch(source_arn)
                system = self.catalog.system_profile(ctx.region, source["id"]) if source else None
                regions = system.destinations if system else tuple(sorted(found.regions))
                candidates.extend(Candidate(r, found.model_id) for r in regions)
        if model is None:
            raise invalid_identifier()
        unique = tuple(dict.fromkeys(candidates))
        return Resolution(model, unique, application_arn(ctx.region, ctx.account, profile_id))


def _parse_arn(model_id: str) -> tuple[str, str, str, str, str] | None:
    """(partition, Region, account, kind, ID) of a model or profile ARN; None for anything else."""
    m = PROFILE_ARN.fullmatch(model_id)
    return None if m is None else (m["partition"], m["region"], m["account"], m["kind"], m["id"])


# Callers name the same few ARNs over and over: their parts are remembered (a bounded number of them).
_REMEMBERED_ARN = 320
_arn_parts = lru_cache(maxsize=4096)(_parse_arn)


# Built once: building the statement per invocation cost ~3x the query itself (bench/runtime).
_PROFILE_ROW = select(inference_profiles.c.models, inference_profiles.c.source_arn).where(
    inference_profiles.c.account == bindparam("account"),
    inference_profiles.c.region == bindparam("region"),
    inference_profiles.c.profile_id == bindparam("profile_id"),
)


def _profile_row(conn: Connection, ctx: RequestContext, profile_id: str) -> tuple[list[str], str] | None:
    params = {"account": ctx.account, "region": ctx.region, "profile_id": profile_id}
    row = conn.execute(_PROFILE_ROW, params).first()
    return None if row is None else (orjson.loads(row.models), row.source_arn)
