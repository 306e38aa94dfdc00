"""The catalogue: foundation models and system-defined inference profiles, per source Region.

Shipped as data (``outcrop/data/*.json``, compiled with sources in ``data/SOURCES.md``), extended by the
config file. A system profile's ``models`` depend on the Region it is seen from: each source Region has
its own destination list. Their order follows real ListInferenceProfiles output where it was observed
for the same set of Regions, and the documentation's order otherwise. Global profiles list a Region-less
model ARN followed by the source Region's, as AWS returns them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

UTC = dt.UTC
# Catalogue entries with no observed timestamps are dated at the snapshot they were compiled from.
CATALOG_DATE = dt.datetime(2025, 11, 24, tzinfo=UTC)


def partition_of(region: str) -> str:
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws"


def foundation_model_arn(region: str, model_id: str) -> str:
    return f"arn:{partition_of(region)}:bedrock:{region}::foundation-model/{model_id}"


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None


@dataclass(frozen=True)
class FoundationModel:
    model_id: str
    name: str
    provider: str
    family: str
    input_modalities: tuple[str, ...]
    output_modalities: tuple[str, ...]
    streaming: bool
    inference_types: tuple[str, ...]
    regions: frozenset[str]
    inference_types_by_region: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    price: Price | None = None
    max_output_tokens: int | None = None  # Converse's largest maxTokens (data/output_limits.json); None: no limit

    def arn(self, region: str) -> str:
        return foundation_model_arn(region, self.model_id)

    def inference_types_in(self, region: str) -> tuple[str, ...]:
        types = set(self.inference_types_by_region.get(region, self.inference_types))
        if "INFERENCE_PROFILE" in self.inference_types:
            types.add("INFERENCE_PROFILE")
        return tuple(t for t in ("ON_DEMAND", "INFERENCE_PROFILE", "PROVISIONED") if t in types)

    def summary(self, region: str) -> dict[str, Any]:
        return {
            "modelArn": self.arn(region),
            "modelId": self.model_id,
            "modelName": self.name,
            "providerName": self.provider,
            "inputModalities": list(self.input_modalities),
            "outputModalities": list(self.output_modalities),
            "responseStreamingSupported": self.streaming,
            "customizationsSupported": [],
            "inferenceTypesSupported": list(self.inference_types_in(region)),
            "modelLifecycle": {"status": "ACTIVE"},
        }


@dataclass(frozen=True)
class SystemProfile:
    """A system-defined profile as seen from one source Region."""

    profile_id: str
    name: str
    model_id: str
    geography: str
    source_region: str
    # Regions in ``models`` order; "" stands for the Region-less ARN of global profiles.
    model_regions: tuple[str, ...]
    # Regions requests may be served in ("*" expanded to every Region that offers the model).
    destinations: tuple[str, ...]
    description: str
    created_at: dt.datetime
    updated_at: dt.datetime

    def model_arns(self) -> list[str]:
        part = partition_of(self.source_region)
        return [f"arn:{part}:bedrock:{r}::foundation-model/{self.model_id}" for r in self.model_regions]

    def arn(self, account: str) -> str:
        part = partition_of(self.source_region)
        return f"arn:{part}:bedrock:{self.source_region}:{account}:inference-profile/{self.profile_id}"

    def summary(self, account: str) -> dict[str, Any]:
        return {
            "inferenceProfileName": self.name,
            "description": self.description,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "inferenceProfileArn": self.arn(account),
            "models": [{"modelArn": a} for a in self.model_arns()],
            "inferenceProfileId": self.profile_id,
            "status": "ACTIVE",
            "type": "SYSTEM_DEFINED",
        }


def _join_regions(regions: list[str]) -> str:
    if len(regions) <= 1:
        return "".join(regions)
    return ", ".join(regions[:-1]) + " and " + regions[-1]


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _model_from_record(rec: Mapping[str, Any]) -> FoundationModel:
    price = rec.get("price_usd_per_1m")
    return FoundationModel(
        model_id=rec["model_id"],
        name=rec.get("name", rec["model_id"]),
        provider=rec.get("provider", rec["model_id"].split(".", 1)[0].title()),
        family=rec.get("family", "other"),
        input_modalities=tuple(rec.get("input_modalities", ("TEXT",))),
        output_modalities=tuple(rec.get("output_modalities", ("TEXT",))),
        streaming=bool(rec.get("streaming", True)),
        inference_types=tuple(rec.get("inference_types", ("ON_DEMAND",))),
        regions=frozenset(rec.get("regions", ())),
        inference_types_by_region={
            r: tuple(t) for r, t in (rec.get("inference_types_by_region_2025_11") or {}).items()
        },
        price=Price(
            input=price["input"] or 0.0,
            output=price.get("output") or 0.0,
            cache_read=price.get("cache_read"),
            cache_write=price.get("cache_write"),
        )
        if price
        else None,
        max_output_tokens=rec.get("max_output_tokens") or None,
    )


class Catalog:
    """Foundation models and system profiles, looked up per Region."""

    def __init__(self, models: Iterable[Mapping[str, Any]], profiles: Iterable[Mapping[str, Any]]) -> None:
        self.models: dict[str, FoundationModel] = {}
        for rec in models:
            self.models[rec["model_id"]] = _model_from_record(rec)
        self._profiles: dict[tuple[str, str], SystemProfile] = {}
        self._by_region: dict[str, list[SystemProfile]] = {}
        for rec in profiles:
            for profile in self._expand_profile(rec):
                self._profiles[(profile.source_region, profile.profile_id)] = profile
        for profile in self._profiles.values():
            self._by_region.setdefault(profile.source_region, []).append(profile)
        for items in self._by_region.values():
            items.sort(key=lambda p: (p.updated_at, p.profile_id))
        self.regions = frozenset(r for m in self.models.values() for r in m.regions) | frozenset(self._by_region)

    @classmethod
    def load(cls, extra_models: Iterable[Mapping[str, Any]] = (), extra_profiles: Iterable[Mapping[str, Any]] = ()) -> Catalog:
        data = resources.files("outcrop.data")
        models = json.loads((data / "foundation_models.json").read_text())
        profiles = json.loads((data / "system_profiles.json").read_text())
        limits = json.loads((data / "output_limits.json").read_text())
        by_id = {m["model_id"]: {**m, "max_output_tokens": limits.get(m["model_id"], {}).get("max_output_tokens")}
                 for m in models}
        for m in extra_models:
            by_id[m["model_id"]] = {**by_id.get(m["model_id"], {}), **m}
        prof_by_id = {p["id"]: p for p in profiles}
        for p in extra_profiles:
            prof_by_id[p["id"]] = {**prof_by_id.get(p["id"], {}), **p}
        return cls(by_id.values(), prof_by_id.values())

    def _expand_profile(self, rec: Mapping[str, Any]) -> Iterable[SystemProfile]:
        model = self.models.get(rec["model_id"])
        observed = {o["source_region"]: o for o in rec.get("api_observed", ()) if "source_region" in o}
        orders = [o["models_order"] for o in rec.get("api_observed", ()) if o.get("models_order")]
        base_name = rec["name"].split(" ", 1)[1] if " " in rec["name"] else rec["name"]
        for source, dests in rec["routes"].items():
            obs = observed.get(source, {})
            is_global = list(dests) == ["*"]
            if is_global:
                model_regions: tuple[str, ...] = ("", source)
                destinations = tuple(sorted(model.regions | {source})) if model else (source,)
                description = f"Routes requests to {base_name} globally across all supported AWS Regions."
            else:
                order = obs.get("models_order") or next((o for o in orders if set(o) == set(dests)), None)
                model_regions = tuple(order or dests)
                destinations = model_regions
                description = f"Routes requests to {base_name} in {_join_regions(list(model_regions))}."
            created = _parse_time(obs.get("createdAt") or rec.get("createdAt")) or CATALOG_DATE
            updated = _parse_time(obs.get("updatedAt") or rec.get("updatedAt")) or created
            yield SystemProfile(
                profile_id=rec["id"],
                name=obs.get("inferenceProfileName", rec["name"]),
                model_id=rec["model_id"],
                geography=rec.get("geography", rec["id"].split(".", 1)[0]),
                source_region=source,
                model_regions=model_regions,
                destinations=destinations,
                description=obs.get("description", rec.get("description", description)),
                created_at=created,
                updated_at=updated,
            )

    # -- lookups ---------------------------------------------------------------------------------------
    def model_in(self, region: str, model_id: str) -> FoundationModel | None:
        model = self.models.get(model_id)
        return model if model is not None and region in model.regions else None

    def models_in(self, region: str) -> list[FoundationModel]:
        return sorted((m for m in self.models.values() if region in m.regions), key=lambda m: m.model_id)

    def system_profile(self, region: str, profile_id: str) -> SystemProfile | None:
        return self._profiles.get((region, profile_id))

    def system_profiles_in(self, region: str) -> list[SystemProfile]:
        """In ListInferenceProfiles order: ``updatedAt`` ascending, ties by ID."""
        return self._by_region.get(region, [])
