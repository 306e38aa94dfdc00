"""``WireReady``: Converse's result serialized as it is equals its serialization through the shape's
converters, for every kind of content, usage and extra member the handler puts in it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from outcrop.app import service_catalog
from outcrop.providers.messages import ChatResponse, Reasoning, Text, ToolUse, Usage
from outcrop.runtime.converse import converse_output, served_as
from outcrop.wire.restjson import WireReady, serialize_output

RESPONSES = {
    "text": ChatResponse((Text("Hello there."),), "end_turn", Usage(12, 3)),
    "empty": ChatResponse((), "max_tokens", Usage(5, 0)),
    "tool use": ChatResponse(
        (Text("Checking."), ToolUse("tooluse_1", "get_weather", {"city": "Paris", "units": None, "days": [1, 2]})),
        "tool_use", Usage(40, 22)),
    "reasoning, signed and not": ChatResponse(
        (Reasoning("Let me think.", "sig=="), Reasoning("More."), Text("42")), "end_turn", Usage(9, 30)),
    "prompt caching": ChatResponse(
        (Text("cached"),), "end_turn", Usage(10, 2, cache_read_tokens=2048, cache_write_tokens=3000,
                                            cache_writes=(("1h", 1000), ("5m", 2000)))),
    "unicode": ChatResponse((Text("naïve café — 日本語 ✓"),), "stop_sequence", Usage(3, 4)),
}
PARAMS: list[dict[str, Any]] = [{}, {"performanceConfig": {"latency": "optimized"}, "serviceTier": {"type": "priority"}}]


def _converse_result(response: ChatResponse, params: dict[str, Any], extra: Any) -> dict[str, Any]:
    out = {**converse_output(response, 231), **served_as(params), "inferenceRegion": "us-west-2"}
    if extra is not None:
        out["additionalModelResponseFields"] = extra
    return out


@pytest.mark.parametrize("name", sorted(RESPONSES))
@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("extra", [None, {"stop_sequence": None, "nested": {"a": [1, {"b": None}]}}])
def test_converse_result_serializes_the_same_as_it_is_and_through_the_converters(name, params, extra):
    op, _ = service_catalog().match("POST", "/model/m/converse")
    result = _converse_result(RESPONSES[name], params, extra)
    generic = serialize_output(op, dict(result))
    ready = serialize_output(op, WireReady(result))
    assert ready == generic
    status, headers, body = ready
    assert status == 200
    assert (b"x-outcrop-inference-region", b"us-west-2") in headers
    assert "inferenceRegion" not in orjson.loads(body)


def test_a_plain_dict_still_goes_through_the_converters():
    """The generic path drops None and unknown members; only a WireReady result skips it."""
    op, _ = service_catalog().match("POST", "/model/m/converse")
    result = {**converse_output(RESPONSES["text"], 1), "stopReason": "end_turn", "metrics": {"latencyMs": 1, "x": 2}}
    _, _, body = serialize_output(op, result)
    assert orjson.loads(body)["metrics"] == {"latencyMs": 1}
