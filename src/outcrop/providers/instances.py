"""Deterministic JSON instances of a JSON Schema: the builtin model's tool inputs and structured output.

``instance(schema, rng)`` builds a value valid against ``schema`` from a seeded byte stream, so the same
request gets the same value. It follows what schemas written by hand and by generators (pydantic, zod,
langchain's ``with_structured_output``) use: ``type`` (one or a list), ``properties`` / ``required``,
``items`` / ``prefixItems`` / ``minItems`` / ``maxItems``, ``enum``, ``const``, ``anyOf`` / ``oneOf``
(the first alternative that is not ``null``), ``allOf`` (merged), local ``$ref`` (``#/$defs/...``,
``#/definitions/...``), numeric bounds and ``multipleOf``, string lengths and the common ``format`` s.
A ``pattern`` is not followed. An object lists its required properties (all of them when it names
none); past ``MAX_DEPTH`` nested levels an optional value is ``null`` and an array empty, where the schema
allows, so that a recursive schema ends. One that cannot end (a required property that refers back to its
own object, ``{"$ref": "#"}``), or nests deeper than ``DEEPEST``, raises ``SchemaTooDeep``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

MAX_DEPTH = 6
DEEPEST = 64  # a schema that nests deeper (or refers to itself with no way out) is refused, not recursed into


class SchemaTooDeep(ValueError):
    """The schema nests deeper than ``DEEPEST`` levels before a value can be made."""


def instance(schema: Any, rng: Any, root: Any = None, depth: int = 0) -> Any:
    """A value valid against ``schema``, drawn from ``rng`` (``byte()`` and ``word()``, as the builtin's stream has)."""
    root = schema if root is None else root
    if depth > DEEPEST:
        raise SchemaTooDeep(f"The JSON schema nests deeper than {DEEPEST} levels (or refers to itself with no end).")
    if not isinstance(schema, dict):
        return rng.word()  # the schema ``true`` (anything goes)
    if "$ref" in schema:
        target = _resolve(root, schema["$ref"])
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        merged = {**target, **rest} if isinstance(target, dict) else rest
        return instance(merged, rng, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = [o for o in schema.get(key) or () if isinstance(o, dict)] if isinstance(schema.get(key), list) else None
        if options:
            concrete = [o for o in options if not _is_null(o)]
            if not concrete or (depth >= MAX_DEPTH and len(concrete) < len(options)):
                return None
            return instance({**_without(schema, key), **concrete[0]}, rng, root, depth)
    if isinstance(schema.get("allOf"), list) and schema["allOf"]:
        merged = _without(schema, "allOf")
        for part in schema["allOf"]:
            part = _resolve(root, part["$ref"]) if isinstance(part, dict) and "$ref" in part else part
            if isinstance(part, dict):
                merged = _merge(merged, part)
        return instance(merged, rng, root, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        concrete = [k for k in kind if k != "null"]
        if not concrete or (depth >= MAX_DEPTH and len(concrete) < len(kind)):
            return None
        kind = concrete[0]
    if kind is None:
        kind = "object" if "properties" in schema or depth == 0 else "array" if "items" in schema else "string"
    if kind == "object":
        return _object(schema, rng, root, depth)
    if kind == "array":
        return _array(schema, rng, root, depth)
    if kind == "integer":
        return _integer(schema, rng)
    if kind == "number":
        return _number(schema, rng)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, rng)


def _object(schema: dict[str, Any], rng: Any, root: Any, depth: int) -> dict[str, Any]:
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    required = schema.get("required")
    names = [n for n in required if isinstance(n, str)] if isinstance(required, list) else list(props)
    return {name: instance(props.get(name, {"type": "string"}), rng, root, depth + 1) for name in names}


def _array(schema: dict[str, Any], rng: Any, root: Any, depth: int) -> list[Any]:
    prefix = schema.get("prefixItems")
    if isinstance(prefix, list):
        return [instance(p, rng, root, depth + 1) for p in prefix]
    low, high = _count(schema.get("minItems")), _count(schema.get("maxItems"))
    n = max(low or 0, 0 if depth >= MAX_DEPTH else 1)
    if high is not None:
        n = min(n, high)
    items = schema.get("items", {"type": "string"})
    return [instance(items, rng, root, depth + 1) for _ in range(n)]


def _number_or_none(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) else None


def _count(value: Any) -> int | None:
    """A count keyword's value (minItems, maxLength …); one that is not a count is ignored."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10_000 else None


def _bounds(schema: dict[str, Any], step: float) -> tuple[float | None, float | None]:
    low, high = _number_or_none(schema.get("minimum")), _number_or_none(schema.get("maximum"))
    exclusive_low, exclusive_high = _number_or_none(schema.get("exclusiveMinimum")), _number_or_none(
        schema.get("exclusiveMaximum"))
    if exclusive_low is not None:
        low = exclusive_low + step
    if exclusive_high is not None:
        high = exclusive_high - step
    return low, high


def _integer(schema: dict[str, Any], rng: Any) -> int:
    low, high = _bounds(schema, 1)
    lo = math.ceil(low) if low is not None else (1 if high is None or high >= 1 else math.floor(high) - 99)
    hi = math.floor(high) if high is not None else lo + 99
    value = lo + rng.byte() % (hi - lo + 1) if hi >= lo else lo
    step = schema.get("multipleOf")
    if isinstance(step, int) and not isinstance(step, bool) and step > 0:
        value = math.ceil(value / step) * step
        if hi >= lo and value > hi:
            value -= step
    return int(value)


def _number(schema: dict[str, Any], rng: Any) -> float:
    low, high = _bounds(schema, 1e-6)
    value = (1 + rng.byte() % 1000) / 10
    if low is not None and high is not None and high >= low:
        value = low + (high - low) * (rng.byte() / 255)
    elif low is not None:
        value = low + value
    elif high is not None:
        value = high - value
    step = _number_or_none(schema.get("multipleOf"))
    if step is not None and step > 0:
        value = math.ceil(value / step) * step
        if high is not None and value > high:
            value -= step
    return float(value)


FORMATS: dict[str, Callable[[Any], str]] = {
    "date-time": lambda rng: f"2026-{1 + rng.byte() % 12:02d}-{1 + rng.byte() % 28:02d}T12:00:00Z",
    "date": lambda rng: f"2026-{1 + rng.byte() % 12:02d}-{1 + rng.byte() % 28:02d}",
    "time": lambda rng: f"{rng.byte() % 24:02d}:{rng.byte() % 60:02d}:00",
    "email": lambda rng: f"{rng.word()}@example.com",
    "uri": lambda rng: f"https://example.com/{rng.word()}",
    "url": lambda rng: f"https://example.com/{rng.word()}",
    "hostname": lambda rng: f"{rng.word()}.example.com",
    "ipv4": lambda rng: f"192.0.2.{1 + rng.byte() % 254}",
    "uuid": lambda rng: _uuid(bytes(rng.byte() for _ in range(16))),
}


def _uuid(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[raw[8] % 4]}{h[17:20]}-{h[20:32]}"


def _string(schema: dict[str, Any], rng: Any) -> str:
    fmt = schema.get("format")
    make = FORMATS.get(fmt) if isinstance(fmt, str) else None
    value = make(rng) if make is not None else rng.word()
    low, high = _count(schema.get("minLength")), _count(schema.get("maxLength"))
    while low is not None and len(value) < low:
        value += " " + rng.word()
    if high is not None and len(value) > high:
        value = value[:high]
    return value


def _resolve(root: Any, ref: Any) -> Any:
    """A local reference (``#`` or ``#/a/b``, RFC 6901 escapes) in ``root``; None where it leads nowhere."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    node = root
    for token in ref[1:].split("/")[1:] if ref != "#" else []:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        else:
            return None
    return node


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and (schema.get("type") == "null" or schema.get("const", 0) is None)


def _without(schema: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != key}


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {**a, **{k: v for k, v in b.items() if k not in ("properties", "required")}}
    if "properties" in a or "properties" in b:
        out["properties"] = {**(a.get("properties") or {}), **(b.get("properties") or {})}
    if "required" in a or "required" in b:
        out["required"] = list(dict.fromkeys([*(a.get("required") or []), *(b.get("required") or [])]))
    return out
