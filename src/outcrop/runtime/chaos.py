"""Fault injection for invocations: rules set through ``/_outcrop/chaos``, applied per serving Region.

A rule ``{"region", "model"?, "fault", "probability"?, "latencyMs"?}`` matches invocations served in
``region`` (and of ``model``, a glob, when given). Before the backend is called, each matching rule
fires with its probability (default 1):

* ``throttle`` → ThrottlingException (429) "Too many requests, please wait before trying again."
* ``error``    → ModelErrorException (424), as when the model itself fails
* ``outage``   → ServiceUnavailableException (503), as when the Region cannot serve
* ``latency``  → waits ``latencyMs`` before the call (adds to time to first token)

Rules live in the memory of the server process (one per worker when ``workers`` > 1).
"""

from __future__ import annotations

import asyncio
import fnmatch
import random
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from outcrop.errors import ModelError, ServiceUnavailable, Throttled, ValidationError

FAULTS = ("throttle", "error", "outage", "latency")


@dataclass(frozen=True)
class ChaosRule:
    id: str
    region: str
    model: str | None
    fault: str
    probability: float
    latency_ms: int

    def matches(self, region: str, model_id: str) -> bool:
        return fnmatch.fnmatchcase(region, self.region) and (
            self.model is None or fnmatch.fnmatchcase(model_id, self.model)
        )

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "region": self.region, "fault": self.fault,
                               "probability": self.probability}
        if self.model is not None:
            out["model"] = self.model
        if self.fault == "latency":
            out["latencyMs"] = self.latency_ms
        return out


def parse_rule(raw: Mapping[str, Any]) -> ChaosRule:
    problems = []
    region, fault, model = raw.get("region"), raw.get("fault"), raw.get("model")
    probability, latency = raw.get("probability", 1.0), raw.get("latencyMs", 0)
    if not isinstance(region, str) or not region:
        problems.append("region: a Region name (or glob) is required")
    if fault not in FAULTS:
        problems.append(f"fault: must be one of {', '.join(FAULTS)}")
    if model is not None and not isinstance(model, str):
        problems.append("model: must be a model ID (or glob)")
    if not isinstance(probability, int | float) or isinstance(probability, bool) or not 0 <= probability <= 1:
        problems.append("probability: must be a number from 0 to 1")
    if not isinstance(latency, int) or isinstance(latency, bool) or latency < 0:
        problems.append("latencyMs: must be a whole number of milliseconds, 0 or more")
    if fault == "latency" and not latency:
        problems.append("latencyMs: a latency rule needs latencyMs")
    unknown = set(raw) - {"region", "model", "fault", "probability", "latencyMs"}
    if unknown:
        problems.append(f"unknown fields: {', '.join(sorted(unknown))}")
    if problems:
        raise ValidationError("Invalid chaos rule: " + "; ".join(problems) + ".")
    return ChaosRule(secrets.token_hex(6), str(region), model, str(fault), float(probability), int(latency))


class Chaos:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.rules: dict[str, ChaosRule] = {}
        self.rng = rng or random.Random()

    def add(self, raw: Mapping[str, Any]) -> ChaosRule:
        rule = parse_rule(raw)
        self.rules[rule.id] = rule
        return rule

    def remove(self, rule_id: str) -> bool:
        return self.rules.pop(rule_id, None) is not None

    def clear(self) -> None:
        self.rules.clear()

    async def apply(self, region: str, model_id: str) -> None:
        """Raise (or delay) as the matching rules say."""
        for rule in list(self.rules.values()):
            if not rule.matches(region, model_id) or self.rng.random() >= rule.probability:
                continue
            if rule.fault == "latency":
                await asyncio.sleep(rule.latency_ms / 1000)
            elif rule.fault == "throttle":
                raise Throttled("Too many requests, please wait before trying again.")
            elif rule.fault == "error":
                raise ModelError(f"The model returned an error in {region} (outcrop chaos rule {rule.id}).",
                                 originalStatusCode=500)
            else:
                raise ServiceUnavailable(f"The service is unavailable in {region} (outcrop chaos rule {rule.id}).")
