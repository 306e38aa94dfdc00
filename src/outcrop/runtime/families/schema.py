"""Each family's request body checked against a JSON schema before it is read, as Bedrock does.

Bedrock validates an InvokeModel body against its model's JSON schema and answers a violation with the
validator's own words and the value's JSON pointer: ``Malformed input request: #/max_tokens: expected type:
Integer, found: String, please reformat your input and try again.`` The schemas here give the type of
every field a family reads, at every depth, so that a value of the wrong type anywhere is refused with its
path, and never reaches a family's parser, the builtin model or a backend as something it cannot use.

They do not forbid members they do not name: a field outcrop does not read is carried by Bedrock's
schema, not refused by ours. A parameter left ``null`` is taken as not given, as before these schemas.
``integer`` is a JSON integer (``1.0`` and ``true`` are not), as Bedrock's Java validator has it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from outcrop.runtime.families.base import malformed

# The validator's names for JSON types, in its messages.
_NAMES = {"string": "String", "integer": "Integer", "number": "Number", "boolean": "Boolean",
          "object": "JSONObject", "array": "JSONArray", "null": "Null"}
# The Python types a JSON parser gives each JSON type, by exact type (so ``True`` is no integer).
_TYPES: dict[str, frozenset[type]] = {
    "string": frozenset({str}), "integer": frozenset({int}), "number": frozenset({int, float}),
    "boolean": frozenset({bool}), "object": frozenset({dict}), "array": frozenset({list}),
    "null": frozenset({type(None)}),
}

# -- building blocks ---------------------------------------------------------------------------------------
STRING: dict[str, Any] = {"type": "string"}
INTEGER: dict[str, Any] = {"type": "integer"}
NUMERIC: dict[str, Any] = {"type": "number"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
OBJECT: dict[str, Any] = {"type": "object"}
STRINGS: dict[str, Any] = {"type": "array", "items": STRING}


def obj(required: tuple[str, ...] = (), **properties: Any) -> dict[str, Any]:
    """An object whose named members have these schemas (others allowed), ``required`` among them."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def params(required: tuple[str, ...] = (), **properties: Any) -> dict[str, Any]:
    """A body or a parameter object (``inferenceConfig``): as ``obj``, but a member it does not require may
    also be ``null``, which means not given (SDKs serialize an unset parameter so)."""
    schema = obj(required, **properties)
    for name, member in properties.items():
        if name not in required and "type" in member:
            types = member["type"] if isinstance(member["type"], list) else [member["type"]]
            schema["properties"][name] = {**member, "type": [*types, "null"]}
    return schema


def array(items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "array", "items": items, **extra}


def one_of_types(*types: str, **extra: Any) -> dict[str, Any]:
    """A value of any of these JSON types (``items`` and ``properties`` apply only to their own type)."""
    return {"type": list(types), **extra}


class BodySchema:
    """A family's body schema, compiled once into nested checks.

    JSON Schema's own subset (``type``, ``properties``, ``required``, ``items``, ``enum``), checked by a
    tree of nodes built once per schema rather than by a general validator: ``jsonschema`` took ~240 µs for a
    Claude body with tools and an image (longer than all the rest outcrop does for the call), and the
    fast code-generating validators count ``1.0`` as an integer, which Bedrock's validator does not.
    A violation is the first in the body's own order. ``tests/unit/test_family_schemas.py`` holds these
    checks to ``jsonschema``'s verdicts.
    """

    __slots__ = ("_check", "schema")

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self._check = _Node(schema)

    def check(self, body: Any) -> None:
        """Raise Bedrock's ``ValidationException`` for the first violation."""
        try:
            self._check(body)
        except _Violation as v:
            pointer = "#" + "".join(f"/{k}" for k in reversed(v.path))
            raise malformed(f"{pointer}: {v.detail}") from None


class _Violation(Exception):
    """A violation on its way up: each enclosing member adds its key to ``path`` (innermost first)."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        self.path: list[str | int] = []


class _Node:
    """One schema, compiled: the exact Python types it allows, and what it asks of members and items."""

    __slots__ = ("enum", "items", "members", "names", "required", "types")

    def __init__(self, schema: Mapping[str, Any]) -> None:
        unknown = set(schema) - {"type", "properties", "required", "items", "enum"}
        if unknown:
            raise ValueError(f"the family schemas use no {sorted(unknown)}")
        kinds = schema.get("type")
        self.names: tuple[str, ...] = tuple(kinds if isinstance(kinds, list) else [kinds]) if kinds else ()
        self.types = frozenset().union(*(_TYPES[n] for n in self.names)) if self.names else None
        self.enum = tuple(schema["enum"]) if "enum" in schema else None
        self.members = {name: _Node(sub) for name, sub in schema.get("properties", {}).items()} or None
        self.required = tuple(schema.get("required", ()))
        self.items = _Node(schema["items"]) if "items" in schema else None

    def __call__(self, value: Any) -> None:
        kind = type(value)
        if self.types is not None and kind not in self.types:
            raise _Violation(_type_detail(self.names, value))
        if self.enum is not None and (kind is bool or value not in self.enum):
            raise _Violation(f"{_shown(value)} is not a valid enum value")
        if kind is dict:
            if self.members is not None:
                for name, member_value in value.items():
                    member = self.members.get(name)
                    if member is not None:
                        try:
                            member(member_value)
                        except _Violation as v:
                            v.path.append(name)
                            raise
            for name in self.required:
                if name not in value:
                    raise _Violation(f"required key [{name}] not found")
        elif kind is list and self.items is not None:
            items = self.items
            for i, item in enumerate(value):
                try:
                    items(item)
                except _Violation as v:
                    v.path.append(i)
                    raise


def _type_detail(names: tuple[str, ...], value: Any) -> str:
    named = [n for n in names if n != "null"] or list(names)  # null, where allowed, is "not given"
    shown = ", ".join(_NAMES[n] for n in named)
    wanted = f"expected type: {shown}" if len(named) == 1 else f"expected type is one of {shown}"
    return f"{wanted}, found: {_found(value)}"


def _found(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "BigDecimal"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "JSONArray"
    return "JSONObject"


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 64 else text[:61] + "..."
