"""The compiled JSON → params conversion of ``parse_request`` against the walk it replaces.

For every body member of every served operation, random JSON values (blobs as base64 or not, timestamps as
numbers, ISO text or garbage, ints where floats go, nulls, wrong kinds) must convert to the same params and
the same problems through ``from_json`` as through ``_from_json``.
"""

from __future__ import annotations

import base64
import random
import zlib
from typing import Any
from urllib.parse import unquote

import orjson
import pytest
from botocore.model import Shape

from outcrop.app import service_catalog
from outcrop.errors import ValidationError
from outcrop.wire.restjson import _from_json, _from_text, from_json, parse_request
from outcrop.wire.validate import ShapeValidator, checker, validation_message

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


def _reference(op: Any, labels: list[str], document: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """parse_request as the walks alone would answer: (params, None) or (None, the ValidationError's message)."""
    problems: list[str] = []
    params: dict[str, Any] = {}
    for binding, raw in zip(op.labels, labels, strict=False):
        params[binding.member] = _from_text(unquote(raw), binding.shape, binding.member, problems)
    for key, value in document.items():
        binding = op.body.get(key)
        if binding is not None and value is not None:
            params[binding.member] = _from_json(value, binding.shape, binding.member, problems)
    walk = ShapeValidator()
    walk.errors.extend(problems)
    walk.validate(params, op.input_shape, "")
    return (None, validation_message(walk.errors)) if walk.errors else (params, None)


STRING_CANDIDATES = ["a", "abc", "Text 1", "user", "A-1_b", "x" * 70, "us-east-1",
                     "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"]


def _valid(shape: Shape, rng: random.Random, depth: int = 0, spoil: float = 0.0) -> Any:
    """A value meant to satisfy ``shape`` (it may not, where a pattern defeats the candidates), with a
    ``spoil`` chance at each node of something random instead."""
    if rng.random() < spoil:
        return _sample(shape, rng, depth + 3)
    meta = shape.metadata
    lo, hi = meta.get("min"), meta.get("max")
    kind = shape.type_name
    if kind == "structure":
        if getattr(shape, "is_document_type", False):
            return {"any": [1, "json", None]}
        if shape.is_tagged_union:
            names = [rng.choice(list(shape.members))]
        else:
            optional = [n for n in shape.members if n not in shape.required_members]
            names = list(shape.required_members) + [n for n in optional if depth <= 3 and rng.random() < 0.3]
        return {n: _valid(shape.members[n], rng, depth + 1, spoil) for n in names}
    if kind in ("list", "map"):
        n = max(lo or 0, 1 if depth <= 3 else 0)
        n = min(n + rng.choice([0, 0, 1]), hi if hi is not None else n + 1)
        if kind == "list":
            return [_valid(shape.member, rng, depth + 1, spoil) for _ in range(n)]
        return {_valid(shape.key, rng, depth + 1): _valid(shape.value, rng, depth + 1, spoil) for _ in range(n)}
    if kind == "string":
        if meta.get("enum"):
            return rng.choice(meta["enum"])
        fitting = [c for c in STRING_CANDIDATES if (lo is None or len(c) >= lo) and (hi is None or len(c) <= hi)
                   and checker(shape)(c)]
        return rng.choice(fitting) if fitting else "a"
    if kind in ("integer", "long"):
        return lo if lo is not None else 1
    if kind in ("float", "double"):
        return rng.choice([0.5, 1]) if lo is None or lo <= 0.5 else lo
    if kind == "boolean":
        return rng.choice([True, False])
    if kind == "blob":
        return base64.b64encode(b"x" * max(lo or 0, 3)).decode()
    if kind == "timestamp":
        return 1735689600
    return "a"


LABEL_VALUES = ["anthropic.claude-3-haiku-20240307-v1:0", "us.anthropic.claude-3-haiku-20240307-v1:0", "abc", "a b"]
BODY_OPS = [(k, op) for k, op in OPS if op.body and op.payload is None]


@pytest.mark.parametrize(("key", "op"), BODY_OPS, ids=[f"{s}:{n}" for (s, n), _ in BODY_OPS])
def test_a_request_is_accepted_exactly_when_the_walks_accept_it(key: tuple[str, str], op: Any) -> None:
    """The compiled reading checks constraints as it converts, and ``validate_input`` then skips what it
    checked: the outcome (params, or the error's whole message) must be the walks' own."""
    rng = random.Random(zlib.crc32(":".join(key).encode()))
    accepted = 0
    for _ in range(300):
        document = _valid(op.input_shape, rng, spoil=rng.choice([0.0, 0.02, 0.1]))
        if not isinstance(document, dict):
            continue
        document = {k: v for k, v in document.items() if k in op.body}
        labels = [rng.choice(LABEL_VALUES) for _ in op.labels]
        try:
            body = orjson.dumps(document)
        except TypeError:  # a number beyond JSON's 64-bit integers: no client can send it
            continue
        expected, message = _reference(op, labels, orjson.loads(body))
        try:
            params = parse_request(op, labels, b"", {}, body)
        except ValidationError as e:
            assert message == e.message, document
            continue
        assert message is None, (document, message)
        assert params == expected
        accepted += 1
    if key in (("bedrock-runtime", "Converse"), ("bedrock", "CreateInferenceProfile")):
        assert accepted > 50  # the accepting path was exercised too
