"""The builtin model's JSON Schema instances (tool inputs, structured output), drawn from its own seeded
stream, checked by jsonschema."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any, Literal, Optional

import jsonschema
import pytest
from pydantic import BaseModel, Field

from outcrop.providers.builtin import _Stream
from outcrop.providers.instances import MAX_DEPTH, instance


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    street: str
    postcode: str = Field(min_length=5, max_length=8)


class Person(BaseModel):
    name: str
    age: int = Field(ge=18, le=21)
    height: float = Field(gt=1.5, lt=2.0)
    email: str = Field(json_schema_extra={"format": "email"})
    born: dt.date
    seen: dt.datetime
    id: uuid.UUID
    colour: Colour
    kind: Literal["a", "b"]
    nickname: Optional[str] = None  # noqa: UP045 - the anyOf-with-null form pydantic writes
    home: Address
    past: list[Address] = Field(min_length=2)
    tags: set[str]
    scores: dict[str, int]
    pair: tuple[int, str]


class Node(BaseModel):
    value: int
    children: list[Node]
    parent: Optional[Node]  # noqa: UP045


SCHEMAS: list[tuple[str, dict[str, Any]]] = [
    ("pydantic, every common field kind", Person.model_json_schema()),
    ("pydantic, recursive", Node.model_json_schema()),
    ("hand-written tool input", {"type": "object", "properties": {"city": {"type": "string"},
                                                                   "days": {"type": "integer", "minimum": 1}},
                                 "required": ["city"]}),
    ("type list and multipleOf", {"type": "object", "properties": {
        "n": {"type": ["integer", "null"], "multipleOf": 5, "maximum": 40},
        "x": {"type": "number", "minimum": -3, "maximum": -1}}}),
    ("allOf and oneOf", {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                                   {"properties": {"b": {"oneOf": [{"type": "null"}, {"type": "boolean"}]}},
                                    "required": ["b"]}]}),
    ("const, enum, bounded arrays", {"type": "object", "properties": {
        "v": {"const": 3}, "e": {"enum": [None, "x"]}, "l": {"type": "array", "maxItems": 0},
        "m": {"type": "array", "items": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 2},
              "minItems": 3}}}),
    ("definitions and an escaped $ref", {"definitions": {"a/b": {"type": "integer", "minimum": 7, "maximum": 7}},
                                          "type": "object", "properties": {"k": {"$ref": "#/definitions/a~1b"}},
                                          "required": ["k"]}),
]


@pytest.mark.parametrize(("name", "schema"), SCHEMAS, ids=[n for n, _ in SCHEMAS])
def test_instances_are_valid_and_the_same_for_the_same_seed(name, schema):
    for seed in (b"one", b"two", b"three"):
        value = instance(schema, _Stream(seed))
        jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())
        assert value == instance(schema, _Stream(seed))


def test_a_recursive_schema_ends():
    value = instance(Node.model_json_schema(), _Stream(b"seed"))
    depth = 0
    while value is not None:
        depth, value = depth + 1, value["parent"]
    assert 1 < depth <= MAX_DEPTH + 1


def test_what_a_tool_input_was_before_is_kept():
    # The builtin's tool inputs for simple schemas are what they were: the first enum value, true.
    schema = {"type": "object", "properties": {"unit": {"enum": ["c", "f"]}, "ok": {"type": "boolean"}}}
    assert instance(schema, _Stream(b"seed")) == {"unit": "c", "ok": True}
