"""The compiled yes/no check of ``validate_input`` against the full walk it short-cuts.

For every input shape of every served operation, random values (mostly valid, with wrong types, missing
members, bad lengths, enums and patterns mixed in) must get the same verdict from ``checker(shape)`` as
from ``ShapeValidator``: no error exactly when the check says valid. ``validate_input`` must return the
walk's errors in every case.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from botocore.model import Shape

from outcrop.app import service_catalog
from outcrop.wire.validate import ShapeValidator, checker, validate_input

OPS = sorted(service_catalog().operations.items())


def _sample(shape: Shape, rng: random.Random, depth: int = 0) -> Any:
    if rng.random() < 0.04:  # a wrong value of some kind
        return rng.choice([None, "x", 7, 1.5, True, [], {}, b"b", "a" * 3000])
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        if getattr(shape, "is_document_type", False):
            return {"any": [1, "json"]}
        names = list(shape.members)
        if depth > 4:
            names = list(shape.required_members)
        elif shape.is_tagged_union:
            names = [rng.choice(names)] if rng.random() < 0.95 else names[:2]
        else:
            names = [n for n in names if n in shape.required_members or rng.random() < 0.5]
        return {n: _sample(shape.members[n], rng, depth + 1) for n in names}
    if kind == "list":
        n = rng.choice([0, 1, 1, 2, 3]) if depth <= 4 else 1
        return [_sample(shape.member, rng, depth + 1) for _ in range(n)]
    if kind == "map":
        keys = [_sample(shape.key, rng, depth + 1) for _ in range(rng.choice([0, 1, 2]))]
        return {k if isinstance(k, str | int | float) else "k": _sample(shape.value, rng, depth + 1) for k in keys}
    if kind == "string":
        if meta.get("enum"):
            return rng.choice(meta["enum"]) if rng.random() < 0.9 else "NOT_AN_ENUM"
        lo = meta.get("min", 0)
        hi = max(lo, min(meta.get("max", 20), 40))
        return rng.choice(["a", "abc-1", "arn:aws:bedrock:us-east-1::foundation-model/m", "a b", ""]) * 1 \
            if rng.random() < 0.5 else "x" * rng.randint(max(0, lo - 1), hi + 1)
    if kind in ("integer", "long"):
        return rng.randint(int(meta.get("min", -5)) - 1, int(meta.get("max", 5000)) + 1)
    if kind in ("float", "double"):
        return rng.uniform(float(meta.get("min", -1)) - 0.5, float(meta.get("max", 2)) + 0.5)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "blob":
        return b"x" * rng.randint(0, 4)
    if kind == "timestamp":
        return dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    return None


@pytest.mark.parametrize(("key", "op"), OPS, ids=[f"{s}:{n}" for (s, n), _ in OPS])
def test_check_agrees_with_the_walk(key: tuple[str, str], op: Any) -> None:
    shape = op.input_shape
    if shape is None:
        return
    rng = random.Random(hash(key) & 0xFFFF)
    for _ in range(300):
        value = _sample(shape, rng)
        if not isinstance(value, dict):
            value = {}
        walk = ShapeValidator()
        walk.validate(value, shape, "")
        assert checker(shape)(value) == (not walk.errors), (value, walk.errors)
        assert validate_input(value, shape) == walk.errors
        assert validate_input(value, shape, ["prior"]) == ["prior", *walk.errors]
