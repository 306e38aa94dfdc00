"""The family body schemas' compiled checks give jsonschema's verdicts, in Bedrock's words.

``outcrop.runtime.families.schema`` checks InvokeModel bodies with closures of its own (jsonschema took
~240 µs for one rich Claude body). Here each family's rich body is mutated thousands of times at every
depth, and every mutation is judged by both: the same accept or refuse, and, where jsonschema finds a single
violation, the same JSON pointer. jsonschema's ``integer`` is narrowed to JSON integers (not ``1.0``), as
Bedrock's validator has it.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from jsonschema import Draft7Validator, validators
from support.model_bodies import BODY_SEEDS, mutated_body

from outcrop.control.catalog import Catalog
from outcrop.errors import ValidationError
from outcrop.runtime.families import CHAT_FAMILIES, EMBEDDING_FAMILIES
from outcrop.runtime.families.schema import BodySchema, obj, params

_Exact = validators.extend(Draft7Validator, type_checker=Draft7Validator.TYPE_CHECKER.redefine(
    "integer", lambda _c, v: isinstance(v, int) and not isinstance(v, bool)))
FAMILIES = {**CHAT_FAMILIES, **EMBEDDING_FAMILIES}


CATALOG = Catalog.load()


def _family_of(model_id: str) -> Any:
    model = CATALOG.model_in("us-east-1", model_id) or CATALOG.model_in("us-west-2", model_id)
    assert model is not None, model_id
    return FAMILIES[model.family]


def _verdict(schema: BodySchema, body: Any) -> str | None:
    try:
        schema.check(body)
    except ValidationError as e:
        return str(e.message)
    return None


@pytest.mark.parametrize("model_id", sorted(BODY_SEEDS))
def test_compiled_checks_agree_with_jsonschema_on_mutated_bodies(model_id: str) -> None:
    family = _family_of(model_id)
    reference = _Exact(family.schema.schema)
    rng = random.Random(model_id)
    refused = 0
    assert _verdict(family.schema, BODY_SEEDS[model_id]) is None  # the seed itself is a valid body
    for _ in range(1_500):
        body = mutated_body(rng, BODY_SEEDS[model_id], rng.choice([1, 2, 3]))
        errors = list(reference.iter_errors(body))
        mine = _verdict(family.schema, body)
        assert (mine is None) == (not errors), (body, mine, [e.message for e in errors])
        if mine is not None:
            refused += 1
            assert mine.startswith("Malformed input request: #") and mine.endswith(
                ", please reformat your input and try again.")
        if len(errors) == 1:
            pointer = "#" + "".join(f"/{p}" for p in errors[0].absolute_path)
            assert mine is not None and mine.startswith(f"Malformed input request: {pointer}: "), (mine, pointer)
    assert refused > 100  # both verdicts were exercised


@pytest.mark.parametrize(("body", "message"), [
    ({"prompt": 1}, "#/prompt: expected type: String, found: Integer"),
    ({"prompt": "p", "max_gen_len": 1.0}, "#/max_gen_len: expected type: Integer, found: BigDecimal"),
    ({"prompt": "p", "max_gen_len": True}, "#/max_gen_len: expected type: Integer, found: Boolean"),
    ({"prompt": "p", "temperature": "hot"}, "#/temperature: expected type: Number, found: String"),
    ({}, "#: required key [prompt] not found"),
    ([], "#: expected type: JSONObject, found: JSONArray"),
])
def test_messages_are_bedrocks_validator_words(body: Any, message: str) -> None:
    assert _verdict(_family_of("meta.llama3-8b-instruct-v1:0").schema, body) == (
        f"Malformed input request: {message}, please reformat your input and try again.")


def test_a_parameter_left_null_is_not_given_but_a_required_one_must_be_there() -> None:
    schema = BodySchema(params(("prompt",), prompt={"type": "string"}, config=obj(n={"type": "integer"})))
    assert _verdict(schema, {"prompt": "p", "config": None}) is None
    assert "#/prompt: expected type: String, found: Null" in str(_verdict(schema, {"prompt": None}))
    assert "#/config/n: expected type: Integer, found: Null" in str(_verdict(schema, {"prompt": "p", "config": {"n": None}}))


def test_a_schema_using_a_keyword_the_checks_do_not_know_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="additionalProperties"):
        BodySchema({"type": "object", "additionalProperties": False})


def test_claudes_body_refuses_a_null_parameter_where_other_families_take_it_as_not_given() -> None:
    """Bedrock's Claude schema: ``#/temperature: expected type: Number, found: Null`` (x3n0cr4735/celi#91)."""
    claude = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    assert _verdict(_family_of("anthropic.claude-3-haiku-20240307-v1:0").schema, {**claude, "temperature": None}) == (
        "Malformed input request: #/temperature: expected type: Number, found: Null, please reformat your input and "
        "try again.")
    llama = {"prompt": "hi", "temperature": None}
    assert _verdict(_family_of("meta.llama3-8b-instruct-v1:0").schema, llama) is None
