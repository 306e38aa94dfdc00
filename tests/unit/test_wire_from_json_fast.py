"""The compiled JSON → params conversion of ``parse_request`` against the walk it replaces.

For every body member of every served operation, random JSON values (blobs as base64 or not, timestamps as
numbers, ISO text or garbage, ints where floats go, nulls, wrong kinds) must convert to the same params and
the same problems through ``from_json`` as through ``_from_json``.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from botocore.model import Shape

from outcrop.app import service_catalog
from outcrop.wire.restjson import _from_json, from_json

OPS = sorted((k, op) for k, op in service_catalog().operations.items() if op.body or op.payload is not None)


def _sample(shape: Shape, rng: random.Random, depth: int = 0) -> Any:
    if rng.random() < 0.05:
        return rng.choice([None, "x", 7, 1.5, True, [], {}, "QUJD", "2025-01-01T00:00:00Z", "not base64!"])
    kind = shape.type_name
    if kind == "structure":
        if getattr(shape, "is_document_type", False):
            return {"any": [1, "json", None]}
        names = list(shape.members) if depth <= 4 else list(shape.required_members)
        out = {n: _sample(shape.members[n], rng, depth + 1) for n in names if rng.random() < 0.6}
        if rng.random() < 0.1:
            out["unknownMember"] = 1
        return out
    if kind == "list":
        return [_sample(shape.member, rng, depth + 1) for _ in range(rng.choice([0, 1, 2]) if depth <= 4 else 1)]
    if kind == "map":
        return {f"k{i}": _sample(shape.value, rng, depth + 1) for i in range(rng.choice([0, 1, 2]))}
    if kind == "blob":
        return rng.choice(["QUJD", "", "not base64!", "QUJ", 5])
    if kind == "timestamp":
        return rng.choice([1735689600, 1735689600.5, "2025-01-01T00:00:00Z", "1735689600", "garbage",
                           "Wed, 01 Jan 2025 00:00:00 GMT", 10**20, True])
    if kind in ("float", "double"):
        return rng.choice([1, 2.5, True, "1"])
    if kind in ("integer", "long"):
        return rng.choice([1, 2.5, "1"])
    return rng.choice(["text", 3, None])


@pytest.mark.parametrize(("key", "op"), OPS, ids=[f"{s}:{n}" for (s, n), _ in OPS])
def test_conversion_agrees_with_the_walk(key: tuple[str, str], op: Any) -> None:
    rng = random.Random(hash(key) & 0xFFFF)
    bindings = list(op.body.values()) if op.body else [op.payload]
    for _ in range(100):
        for binding in bindings:
            value = _sample(binding.shape, rng)
            walked: list[str] = []
            compiled: list[str] = []
            try:
                expected: Any = _from_json(value, binding.shape, binding.member, walked)
            except Exception as e:  # whatever the walk raises, the compiled form must raise too
                with pytest.raises(type(e)):
                    from_json(value, binding.shape, binding.member, compiled)
                continue
            assert from_json(value, binding.shape, binding.member, compiled) == expected
            assert compiled == walked
