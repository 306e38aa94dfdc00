"""Converse's ``additionalModelResponseFieldPaths``: JSON Pointers (RFC 6901) into the model's own response."""

from __future__ import annotations

import pytest

from outcrop.errors import ValidationError
from outcrop.providers.messages import BlockDelta, BlockStart, MessageStart, MessageStop, Text, ToolUse, Usage
from outcrop.runtime.converse import (
    StreamedResponse,
    chat_request,
    pick_fields,
    reasoning_effort,
    response_field_paths,
)

NATIVE = {
    "stop_sequence": None,
    "usage": {"input_tokens": 3, "output_tokens": 5},
    "content": [{"type": "text", "text": "hi"}, {"type": "tool_use", "name": "f"}],
    "a/b": 1,
    "m~n": 2,
}


def paths(*pointers: str) -> list[list[str]]:
    return response_field_paths({"additionalModelResponseFieldPaths": list(pointers)})


def test_pointers_pick_fields_at_their_own_places():
    picked = pick_fields(NATIVE, paths("/stop_sequence", "/usage/output_tokens", "/content/1/name", "/usage/input_tokens"))
    assert picked == {"stop_sequence": None, "usage": {"output_tokens": 5, "input_tokens": 3},
                      "content": {"1": {"name": "f"}}}


def test_escaped_tokens_and_missing_fields():
    assert pick_fields(NATIVE, paths("/a~1b", "/m~0n")) == {"a/b": 1, "m~n": 2}
    # Valid pointers the response does not have are left out; none found at all is no field.
    assert pick_fields(NATIVE, paths("/nope", "/content/2", "/content/01", "/usage/x/y")) is None
    assert response_field_paths({}) == []


@pytest.mark.parametrize("pointer", ["stop_sequence", "/a~2", "/~", "x/y"])
def test_ill_formed_pointers_are_refused(pointer):
    with pytest.raises(ValidationError) as e:
        paths(pointer)
    assert repr(pointer) in e.value.message and "RFC 6901" in e.value.message


def test_a_stream_adds_up_to_its_response():
    s = StreamedResponse()
    for event in (MessageStart(input_tokens=4), BlockDelta(0, text="Hello "), BlockDelta(0, text="there"),
                  BlockStart(1, ToolUse("t1", "lookup", {})), BlockDelta(1, tool_input='{"q":'),
                  BlockDelta(1, tool_input='"x"}')):
        s.add(event)
    stop = MessageStop("tool_use")
    response = s.response(stop, Usage(4, 9))
    assert response.content == (Text("Hello there"), ToolUse("t1", "lookup", {"q": "x"}))
    assert (response.stop_reason, response.usage) == ("tool_use", Usage(4, 9))
    assert s.response(stop, None).usage.input_tokens == 4  # no usage event: counted by outcrop's rule


@pytest.mark.parametrize(("config", "effort"), [
    (None, None),
    ({"type": "enabled", "maxReasoningEffort": "medium"}, "medium"),
    ({"type": "enabled"}, "low"),  # enabled, no effort: the least
    ({"type": "disabled", "maxReasoningEffort": "high"}, None),
    ({"maxReasoningEffort": "high"}, None),  # type defaults to disabled, as in Nova's schema
])
def test_reasoning_config_gives_its_effort(config, effort):
    assert reasoning_effort(config, "reasoningConfig", ValidationError) == effort


@pytest.mark.parametrize(("config", "message"), [
    ("high", "reasoningConfig must be an object such as"),
    ({"type": True}, "reasoningConfig.type must be enabled or disabled, not True."),
    ({"type": "enabled", "maxReasoningEffort": "HIGH"}, "must be one of low, medium, high, not 'HIGH'."),
    ({"type": "enabled", "budgetTokens": 2048}, "has no field 'budgetTokens': it takes type and maxReasoningEffort."),
])
def test_a_wrong_reasoning_config_says_what_to_send(config, message):
    with pytest.raises(ValidationError) as e:
        reasoning_effort(config, "reasoningConfig", ValidationError)
    assert message in e.value.message


def test_only_nova_2_reads_reasoning_config():
    params = {"messages": [{"role": "user", "content": [{"text": "Hi"}]}],
              "additionalModelRequestFields": {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "high"}}}
    assert chat_request(params, "amazon.nova-2-lite-v1:0").reasoning_effort == "high"
    for other_model in ("amazon.nova-lite-v1:0", "anthropic.claude-3-haiku-20240307-v1:0"):
        other = chat_request(params, other_model)
        assert other.reasoning_effort is None and other.extra == params["additionalModelRequestFields"]
