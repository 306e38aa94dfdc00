"""The event-stream writer, checked against botocore's decoder fed one byte at a time."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import orjson
from botocore.eventstream import EventStreamBuffer
from botocore.parsers import EventStreamJSONParser

from outcrop.errors import ModelTimeout, Throttled
from outcrop.wire.eventstream import EventStreamWriter, encode_frame
from outcrop.wire.model import ServiceCatalog

CATALOG = ServiceCatalog(["bedrock-runtime"])


def _union(op: str) -> Any:
    payload = CATALOG.operations[("bedrock-runtime", op)].output_payload
    assert payload is not None
    return payload.shape


def _decode_bytewise(data: bytes) -> list[Any]:
    buffer = EventStreamBuffer()
    messages = []
    for i in range(len(data)):
        buffer.add_data(data[i : i + 1])
        messages.extend(buffer)
    return messages


def _parse(union: Any, data: bytes) -> list[dict[str, Any]]:
    parser = EventStreamJSONParser()
    out = []
    for message in _decode_bytewise(data):
        parsed = parser.parse(message.to_response_dict(), union)
        out.append(parsed)
    return out


async def _collect(frames: AsyncIterator[bytes]) -> bytes:
    return b"".join([f async for f in frames])


def test_frame_decodes_byte_by_byte_with_its_headers_and_payload():
    frame = encode_frame({":event-type": "chunk", ":message-type": "event"}, "héllo".encode())
    [message] = _decode_bytewise(frame * 1)
    assert message.headers == {":event-type": "chunk", ":message-type": "event"}
    assert message.payload == "héllo".encode()


def test_converse_stream_events_parse_as_botocore_parses_them():
    union = _union("ConverseStream")
    writer = EventStreamWriter(union)
    data = writer.event("messageStart", {"role": "assistant"}) + writer.event(
        "contentBlockDelta", {"delta": {"text": "Grüße"}, "contentBlockIndex": 0}
    ) + writer.event("metadata", {"usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4},
                                  "metrics": {"latencyMs": 7}})
    parsed = _parse(union, data)
    assert parsed[0] == {"messageStart": {"role": "assistant"}}
    assert parsed[1] == {"contentBlockDelta": {"delta": {"text": "Grüße"}, "contentBlockIndex": 0}}
    assert parsed[2]["metadata"]["usage"]["totalTokens"] == 4


def test_payload_part_bytes_are_base64_in_the_json_payload():
    union = _union("InvokeModelWithResponseStream")
    frame = EventStreamWriter(union).event("chunk", {"bytes": b'{"a":1}'})
    [message] = _decode_bytewise(frame)
    assert orjson.loads(message.payload) == {"bytes": base64.b64encode(b'{"a":1}').decode()}
    assert _parse(union, frame) == [{"chunk": {"bytes": b'{"a":1}'}}]


def test_mid_stream_error_becomes_a_final_exception_frame():
    union = _union("ConverseStream")

    async def events() -> AsyncIterator[dict[str, Any]]:
        yield {"messageStart": {"role": "assistant"}}
        raise Throttled("slow down")

    data = asyncio.run(_collect(EventStreamWriter(union).frames(events(), "req-1")))
    messages = _decode_bytewise(data)
    assert [m.headers[":message-type"] for m in messages] == ["event", "exception"]
    assert messages[1].headers[":exception-type"] == "throttlingException"
    assert orjson.loads(messages[1].payload) == {"message": "slow down"}


def test_error_not_in_the_union_becomes_model_stream_error():
    union = _union("ConverseStream")  # has no modelTimeoutException member
    frame = EventStreamWriter(union).exception(ModelTimeout("too slow"))
    [message] = _decode_bytewise(frame)
    assert message.headers[":exception-type"] == "modelStreamErrorException"
    assert EventStreamWriter(_union("InvokeModelWithResponseStream")).exception(ModelTimeout("x"))


def test_unknown_extra_keys_pass_through_and_the_cached_plan_frames_alike():
    union = _union("ConverseStream")
    writer = EventStreamWriter(union)
    first = writer.event("contentBlockDelta", {"delta": {"text": "a"}, "contentBlockIndex": 0, "p": "abcd"})
    again = writer.event("contentBlockDelta", {"delta": {"text": "a"}, "contentBlockIndex": 0, "p": "abcd"})
    assert first == again
    [message] = _decode_bytewise(first)
    assert orjson.loads(message.payload) == {"delta": {"text": "a"}, "contentBlockIndex": 0, "p": "abcd"}
    assert message.headers == {":event-type": "contentBlockDelta", ":content-type": "application/json",
                               ":message-type": "event"}


def test_header_and_raw_payload_members_are_framed_as_such():
    from botocore.model import ShapeResolver

    union = ShapeResolver({
        "Stream": {"type": "structure", "members": {"note": {"shape": "Note"}}, "eventstream": True},
        "Note": {"type": "structure", "event": True, "members": {
            "id": {"shape": "S", "eventheader": True}, "data": {"shape": "B", "eventpayload": True},
            "n": {"shape": "S"}}},
        "S": {"type": "string"}, "B": {"type": "blob"},
    }).get_shape_by_name("Stream")
    writer = EventStreamWriter(union)
    [raw] = _decode_bytewise(writer.event("note", {"id": "x1", "data": b"\x00raw"}))
    assert raw.headers == {":event-type": "note", ":content-type": "application/octet-stream",
                           ":message-type": "event", "id": "x1"}
    assert raw.payload == b"\x00raw"
    [as_json] = _decode_bytewise(writer.event("note", {"id": "x2", "n": "v"}))
    assert as_json.headers["id"] == "x2" and as_json.headers[":content-type"] == "application/json"
    assert orjson.loads(as_json.payload) == {"n": "v"}
