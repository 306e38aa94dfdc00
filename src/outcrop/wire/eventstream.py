"""``application/vnd.amazon.eventstream`` framing, server side: events of an operation's stream → frames.

A frame is ``total length | headers length | prelude CRC | headers | payload | message CRC``, all
big-endian, CRCs being CRC-32 (``binascii.crc32``). Headers used here are strings only (type 7). An event
is one member of the operation's event-stream union, ``{member name: member value}``; its value is
serialized as JSON by its shape, except members marked ``eventpayload`` (sent raw) or ``eventheader``
(sent as headers). An error raised while the stream runs becomes one exception frame, named after the
union member of the same error code if there is one (``throttlingException``), else
``modelStreamErrorException`` or ``internalServerException``, and ends the stream.
"""

from __future__ import annotations

import binascii
import logging
import struct
from collections.abc import AsyncIterator, Mapping
from functools import lru_cache
from typing import Any, NamedTuple

import orjson
from botocore.model import Shape

from outcrop.errors import ServiceError
from outcrop.wire.model import once_per_shape
from outcrop.wire.restjson import Converter, json_converter

log = logging.getLogger("outcrop.eventstream")

CONTENT_TYPE = b"application/vnd.amazon.eventstream"
_STRING = 7


def encode_headers(headers: Mapping[str, str]) -> bytes:
    return _encode_headers(tuple(headers.items()))


@lru_cache(maxsize=512)  # a stream repeats the same few header sets in every frame
def _encode_headers(items: tuple[tuple[str, str], ...]) -> bytes:
    out = bytearray()
    for name, value in items:
        raw_name, raw_value = name.encode("utf-8"), value.encode("utf-8")
        out += struct.pack(">B", len(raw_name)) + raw_name
        out += struct.pack(">BH", _STRING, len(raw_value)) + raw_value
    return bytes(out)


def encode_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message."""
    return _frame(encode_headers(headers), payload)


def _frame(raw_headers: bytes, payload: bytes) -> bytes:
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    body = prelude + raw_headers + payload
    return body + struct.pack(">I", binascii.crc32(body))


def _event_headers(name: str) -> dict[str, str]:
    return {":event-type": name, ":content-type": "application/json", ":message-type": "event"}


def _lower_camel(code: str) -> str:
    return code[:1].lower() + code[1:]


class _EventPlan(NamedTuple):
    """How one member of the union is framed, worked out once: its JSON members with their converters, its
    header and raw-payload members, and (when it has neither) its headers, already encoded."""

    body: tuple[tuple[str, Converter | None], ...]
    headers: tuple[str, ...]
    payload: str | None
    known: frozenset[str]
    raw_headers: bytes | None


class EventStreamWriter:
    """Frames for the events of one event-stream union shape (``ConverseStreamOutput``, ``ResponseStream``)."""

    def __init__(self, union: Shape) -> None:
        self.union = union
        self._plans: dict[str, _EventPlan] = {}

    def _plan(self, name: str) -> _EventPlan:
        shape = self.union.members[name]
        body, headers, payload = [], [], None
        for member_name, member in shape.members.items():
            if member.serialization.get("eventheader"):
                headers.append(member_name)
            elif member.serialization.get("eventpayload"):
                payload = member_name
            else:
                body.append((member_name, json_converter(member)))
        simple = not headers and payload is None
        raw = encode_headers(_event_headers(name)) if simple else None
        plan = self._plans[name] = _EventPlan(tuple(body), tuple(headers), payload, frozenset(shape.members), raw)
        return plan

    def event(self, name: str, value: Mapping[str, Any]) -> bytes:
        plan = self._plans.get(name) or self._plan(name)
        body: dict[str, Any] = {}
        for member_name, convert in plan.body:
            item = value.get(member_name)
            if item is not None:
                body[member_name] = item if convert is None else convert(item)
        if not plan.known.issuperset(value):
            # Unknown extra keys (Bedrock's "p" padding, say) pass through as they are.
            body.update((k, v) for k, v in value.items() if k not in plan.known)
        if plan.raw_headers is not None:
            return _frame(plan.raw_headers, orjson.dumps(body))
        headers = _event_headers(name)
        for member_name in plan.headers:
            item = value.get(member_name)
            if item is not None:
                headers[member_name] = str(item)
        payload = b""
        item = value.get(plan.payload) if plan.payload is not None else None
        if item is not None:
            payload = item if isinstance(item, bytes) else str(item).encode("utf-8")
            headers[":content-type"] = "application/octet-stream"
        if not payload:
            payload = orjson.dumps(body)
        return encode_frame(headers, payload)

    def exception(self, error: ServiceError) -> bytes:
        name = _lower_camel(error.code)
        if name not in self.union.members:
            name = next(
                (n for n in ("modelStreamErrorException", "internalServerException") if n in self.union.members),
                name,
            )
        headers = {":exception-type": name, ":content-type": "application/json", ":message-type": "exception"}
        return encode_frame(headers, orjson.dumps({"message": error.message, **error.fields}))

    async def frames(self, events: AsyncIterator[Mapping[str, Any]], request_id: str) -> AsyncIterator[bytes]:
        """Each event as a frame; a mid-stream error as a final exception frame."""
        try:
            async for event in events:
                for name, value in event.items():
                    yield self.event(name, value)
        except ServiceError as e:
            yield self.exception(e)
        except Exception:
            log.exception("stream of request %s failed", request_id)
            yield self.exception(ServiceError(f"An internal error occurred (request {request_id})."))
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()


def stream_output(
    op: Any, result: Mapping[str, Any], request_id: str
) -> tuple[int, list[tuple[bytes, bytes]], AsyncIterator[bytes]]:
    """Status, headers and frames of an operation whose output payload is an event stream."""
    headers: list[tuple[bytes, bytes]] = []
    for binding in op.output_headers:
        value = result.get(binding.member)
        if value is not None:
            headers.append((binding.wire_name.encode("latin-1"), str(value).encode("latin-1")))
    headers.append((b"content-type", CONTENT_TYPE))
    payload = op.output_payload
    return op.status, headers, writer_for(payload.shape).frames(result[payload.member], request_id)


_WRITERS: dict[int, tuple[Shape, EventStreamWriter]] = {}


def writer_for(union: Shape) -> EventStreamWriter:
    """One writer per union shape: its event plans are worked out on first use and then serve every stream
    of the operation."""
    return once_per_shape(_WRITERS, union, EventStreamWriter)
