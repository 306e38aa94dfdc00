"""The rest-json protocol, server side: request → typed input params, output params → response.

Both directions are driven by the operation's shapes (``outcrop.wire.model``). Input conversion problems
(a query value that is not a number, a blob that is not base64) are collected as validation errors beside
the constraint checks of ``outcrop.wire.validate``, so a caller sees every problem at once.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable, Mapping
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from botocore.model import Shape

from outcrop.errors import SerializationError, ServiceError, ValidationError
from outcrop.wire.model import Operation, once_per_shape
from outcrop.wire.validate import checker, validate_input, validation_message

UTC = dt.UTC
JSON_CONTENT_TYPE = b"application/json"
# The deepest JSON document a request may carry. orjson reads 1024 levels but writes only 254, and what a request
# carries (a tool's input, a schema) is written again, a few levels deeper, into answers and backend calls:
# deeper documents are refused as they arrive, never recursed into.
MAX_JSON_DEPTH = 200


def nests_deeper(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``value`` nests arrays and objects more than ``limit`` levels deep (iteratively: no recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def load_json_document(body: bytes | str) -> Any:
    """``orjson.loads``, refusing documents deeper than ``MAX_JSON_DEPTH`` (JSONDecodeError, ValueError)."""
    value = orjson.loads(body)
    brackets = body.count(b"[") + body.count(b"{") if isinstance(body, bytes) else body.count("[") + body.count("{")
    if brackets > MAX_JSON_DEPTH and nests_deeper(value):
        raise ValueError(f"nests JSON arrays and objects deeper than {MAX_JSON_DEPTH} levels")
    return value


# --------------------------------------------------------------------------------------------- input
def parse_request(
    op: Operation,
    raw_labels: list[str],
    query_string: bytes,
    headers: Mapping[str, str],
    body: bytes,
) -> dict[str, Any]:
    """Typed, validated input params of ``op``; raises ValidationError or SerializationError."""
    params: dict[str, Any] = {}
    problems: list[str] = []
    for binding, raw in zip(op.labels, raw_labels, strict=False):
        params[binding.member] = _from_text(_unquoted(raw), binding.shape, binding.member, problems)
    if op.query and query_string:
        for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            binding = op.query.get(key)
            if binding is None:
                continue
            if binding.shape.type_name == "list":
                item = _from_text(value, binding.shape.member, binding.member, problems)
                params.setdefault(binding.member, []).append(item)
            else:
                params[binding.member] = _from_text(value, binding.shape, binding.member, problems)
    for binding in op.headers:
        value = headers.get(binding.wire_name)
        if value is not None:
            params[binding.member] = _from_text(value, binding.shape, binding.member, problems)
    if op.payload is not None:
        shape = op.payload.shape
        if shape.type_name in ("blob", "string"):
            if body or op.payload.member in op.input_shape.required_members:  # type: ignore[union-attr]
                params[op.payload.member] = body if shape.type_name == "blob" else body.decode("utf-8", "replace")
        elif body:
            params[op.payload.member] = from_json(_load_json(body), shape, op.payload.member, problems)
    checked: list[str] = []  # members whose compiled reading also checked them
    if op.payload is None and op.body:
        document = _load_json(body) if body.strip() else {}
        if not isinstance(document, dict):
            raise SerializationError("The request body must be a JSON object.")
        for key, value in document.items():
            binding = op.body.get(key)
            if binding is not None and value is not None:
                try:
                    params[binding.member] = _json_reader(binding.shape)(value)
                    checked.append(binding.member)
                except (_Problem, RecursionError):
                    params[binding.member] = _from_json(value, binding.shape, binding.member, problems)
    errors = validate_input(params, op.input_shape, problems, checked)
    if errors:
        raise ValidationError(validation_message(errors))
    return params


def _unquoted(raw: str) -> str:
    """A path label, percent-decoded. Runtime calls name the same few model IDs and profile ARNs over and
    over, and an ARN's dozen escapes cost ``unquote`` several µs each time: labels of an identifier's
    length are remembered (a bounded number of them)."""
    return _unquote_remembered(raw) if len(raw) <= _REMEMBERED_LABEL else unquote(raw)


_REMEMBERED_LABEL = 320  # an application profile's ARN, percent-encoded, is ~110 characters
_unquote_remembered = lru_cache(maxsize=4096)(unquote)


def _load_json(body: bytes) -> Any:
    try:
        return load_json_document(body)
    except orjson.JSONDecodeError as e:
        if "depth" in e.msg or "recursion" in e.msg:
            raise SerializationError(
                f"The request body nests JSON arrays and objects deeper than {MAX_JSON_DEPTH} levels."
            ) from None
        raise SerializationError(f"The request body is not valid JSON: {e.msg} at position {e.pos}.") from None
    except ValueError:
        raise SerializationError(
            f"The request body nests JSON arrays and objects deeper than {MAX_JSON_DEPTH} levels."
        ) from None


def _from_text(value: str, shape: Shape, path: str, problems: list[str]) -> Any:
    """A label, query or header value, converted to its shape's type (left as text if it will not go)."""
    kind = shape.type_name
    try:
        if kind in ("integer", "long"):
            return int(value)
        if kind in ("float", "double"):
            return float(value)
        if kind == "boolean":
            if value in ("true", "false"):
                return value == "true"
            raise ValueError(value)
        if kind == "timestamp":
            return _parse_timestamp(value)
        if kind == "blob":
            return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error, OverflowError):
        problems.append(
            f"Value '{value[:256]}' at '{path}' failed to satisfy constraint: Member must be of type {kind}"
        )
        return None
    return value


def _from_json(value: Any, shape: Shape, path: str, problems: list[str]) -> Any:
    """A JSON value converted where the JSON form differs from the typed one (blobs, timestamps)."""
    kind = shape.type_name
    if getattr(shape, "is_document_type", False):  # free-form JSON (tool input, additionalModelRequestFields): kept as sent
        return value
    if kind == "structure" and isinstance(value, dict):
        out = {}
        for key, item in value.items():
            member = shape.members.get(key)
            if member is not None and item is not None:
                out[key] = _from_json(item, member, f"{path}.{key}", problems)
        return out
    if kind == "list" and isinstance(value, list):
        return [
            None if item is None else _from_json(item, shape.member, f"{path}.{i}.member", problems)
            for i, item in enumerate(value, 1)
        ]
    if kind == "map" and isinstance(value, dict):
        return {k: None if v is None else _from_json(v, shape.value, f"{path}.{k}", problems) for k, v in value.items()}
    if kind == "blob" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            problems.append(
                f"Value at '{path}' failed to satisfy constraint: Member must be base64-encoded binary data"
            )
            return None
    if kind == "timestamp" and isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            return _parse_timestamp(value)
        except (ValueError, OverflowError):
            problems.append(f"Value '{value}' at '{path}' failed to satisfy constraint: Member must be a timestamp")
            return None
    if kind in ("float", "double") and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def from_json(value: Any, shape: Shape, path: str, problems: list[str]) -> Any:
    """``_from_json``, by a conversion compiled once per shape; a value with a problem (a blob that is not
    base64, a timestamp that does not parse, a constraint it breaks) is converted again by the walk, which
    words the conversion problems (constraints are worded by ``validate_input``)."""
    try:
        return _json_reader(shape)(value)
    except (_Problem, RecursionError):  # RecursionError: the compiled form nests deeper per level than the walk
        return _from_json(value, shape, path, problems)


class _Problem(Exception):
    pass


Reader = Callable[[Any], Any]
_READERS: dict[int, tuple[Shape, Reader]] = {}


def _json_reader(shape: Shape) -> Reader:
    """``_from_json`` for ``shape`` that also checks every constraint of ``outcrop.wire.validate`` on what
    it makes, and raises ``_Problem`` (no paths, no wording) at the first conversion problem or violation:
    a value it returns is one that ``validate_input`` accepts. Built once per shape; children on first use.
    One walk where there were two (a conversion, then a check): parsing a Converse request is the largest
    piece of outcrop's work on an invocation (bench/runtime)."""
    return once_per_shape(_READERS, shape, _build_reader)


def _identity(value: Any) -> Any:
    return value


def _lazy_reader(shape: Shape) -> Reader:
    cell: list[Reader] = []

    def read(value: Any) -> Any:
        if not cell:
            cell.append(_json_reader(shape))
        return cell[0](value)

    return read


def _build_reader(shape: Shape) -> Reader:
    kind = shape.type_name
    if getattr(shape, "is_document_type", False):
        return _identity
    meta = shape.metadata
    lo, hi = meta.get("min"), meta.get("max")
    if kind == "structure":
        readers = {name: _lazy_reader(member) for name, member in shape.members.items()}
        required = tuple(shape.required_members)
        union = bool(shape.is_tagged_union)

        def read_structure(value: Any) -> Any:
            if not isinstance(value, dict):
                raise _Problem
            out = {}
            for k, item in value.items():
                if item is not None:
                    reader = readers.get(k)
                    if reader is not None:
                        out[k] = reader(item)
            for name in required:
                if name not in out:
                    raise _Problem
            if union and len(out) != 1:
                raise _Problem
            return out

        return read_structure
    if kind == "list":
        item_reader = _lazy_reader(shape.member)

        def read_list(value: Any) -> Any:
            if not isinstance(value, list):
                raise _Problem
            n = len(value)
            if (lo is not None and n < lo) or (hi is not None and n > hi):
                raise _Problem
            return [_problem() if item is None else item_reader(item) for item in value]

        return read_list
    if kind == "map":
        key_check = checker(shape.key)
        value_reader = _lazy_reader(shape.value)

        def read_map(value: Any) -> Any:
            if not isinstance(value, dict):
                raise _Problem
            n = len(value)
            if (lo is not None and n < lo) or (hi is not None and n > hi):
                raise _Problem
            return {k: value_reader(v) if v is not None and key_check(k) else _problem() for k, v in value.items()}

        return read_map
    check = checker(shape)
    if kind == "blob":

        def read_blob(value: Any) -> Any:
            if not isinstance(value, str):
                raise _Problem
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise _Problem from None
            if not check(data):
                raise _Problem
            return data

        return read_blob
    if kind == "timestamp":

        def read_timestamp(value: Any) -> Any:
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise _Problem
            try:
                return _parse_timestamp(value)
            except (ValueError, OverflowError):
                raise _Problem from None

        return read_timestamp
    if kind in ("float", "double"):

        def read_float(value: Any) -> Any:
            if not check(value):
                raise _Problem
            return float(value)

        return read_float

    def read_checked(value: Any) -> Any:
        if not check(value):
            raise _Problem
        return value

    return read_checked


def _problem() -> Any:
    raise _Problem


def _parse_timestamp(value: str | float) -> dt.datetime:
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, UTC)
    try:
        return dt.datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = parsedate_to_datetime(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# -------------------------------------------------------------------------------------------- output
def format_timestamp(value: dt.datetime, fmt: str = "iso8601") -> str | float:
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if fmt == "iso8601":
        # ``2024-01-02T03:04:05.000000Z``: always microseconds, always Z (isoformat is C, strftime is not).
        return value.isoformat(timespec="microseconds")[:-6] + "Z"
    if fmt == "rfc822":
        return format_datetime(value, usegmt=True)
    return value.timestamp()


Converter = Callable[[Any], Any]
_CONVERTERS: dict[tuple[int, str, str], Converter | None] = {}


def json_converter(shape: Shape, default_ts: str = "unixTimestamp") -> Converter | None:
    """A function that turns an output value into its JSON form (timestamps per the shape's format, blobs
    as base64, members renamed, unset members dropped), or None where the value is JSON already.

    Built once per shape and cached: serializing a response is then a walk over precomputed closures.
    """
    key = (id(getattr(shape, "_shape_resolver", None)), shape.name, default_ts)
    if key in _CONVERTERS:
        return _CONVERTERS[key]
    # A recursive shape refers back to itself: point it at the cache, filled in below.
    _CONVERTERS[key] = lambda value: _apply(_CONVERTERS[key], value)
    converter = _build_converter(shape, default_ts)
    _CONVERTERS[key] = converter
    return converter


def _apply(converter: Converter | None, value: Any) -> Any:
    return value if converter is None else converter(value)


def _build_converter(shape: Shape, default_ts: str) -> Converter | None:
    kind = shape.type_name
    if getattr(shape, "is_document_type", False):
        return None
    if kind == "structure":
        members = [
            (name, member.serialization.get("name", name), json_converter(member, default_ts))
            for name, member in shape.members.items()
        ]

        if any(name != wire for name, wire, _ in members):

            def convert_renamed(value: Mapping[str, Any]) -> dict[str, Any]:
                out = {}
                for name, wire, conv in members:
                    item = value.get(name)
                    if item is not None:
                        out[wire] = item if conv is None else conv(item)
                return out

            return convert_renamed
        known = frozenset(name for name, _, _ in members)
        converting = [(name, conv) for name, _, conv in members if conv is not None]

        # The common case, kept cheap for pages of summaries: copy the set members, convert the few that
        # need it (timestamps, nested lists).
        def convert_structure(value: Mapping[str, Any]) -> dict[str, Any]:
            out = {k: v for k, v in value.items() if v is not None and k in known}
            for name, conv in converting:
                item = out.get(name)
                if item is not None:
                    out[name] = conv(item)
            return out

        return convert_structure
    if kind == "list":
        inner = json_converter(shape.member, default_ts)
        if inner is None:
            return None
        return lambda value: [inner(item) for item in value]
    if kind == "map":
        inner_value = json_converter(shape.value, default_ts)
        if inner_value is None:
            return None
        return lambda value: {k: inner_value(v) for k, v in value.items()}
    if kind == "timestamp":
        fmt = shape.serialization.get("timestampFormat", default_ts)
        return lambda value: format_timestamp(value, fmt) if isinstance(value, dt.datetime) else value
    if kind == "blob":
        return lambda value: (
            base64.b64encode(value).decode("ascii") if isinstance(value, bytes | bytearray) else value
        )
    return None


def to_json_value(value: Any, shape: Shape, default_ts: str = "unixTimestamp") -> Any:
    """An output value in its JSON form (see ``json_converter``)."""
    return _apply(json_converter(shape, default_ts), value)


class WireReady(dict):  # type: ignore[type-arg]
    """An operation's result whose body members are already in their JSON form: no None anywhere in them,
    no member the shape does not have, no timestamp or blob to convert. ``serialize_output`` then picks the
    body members as they are, instead of rebuilding every nested structure through the shape's converters
    (4% of the instructions of a whole Converse). Converse's handler builds its result this way
    (``runtime.converse.converse_output``); a test holds both serializations of it equal."""


def serialize_output(op: Operation, result: Mapping[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of a successful, non-streaming response."""
    status = op.status
    headers: list[tuple[bytes, bytes]] = []
    for binding in op.output_headers:
        value = result.get(binding.member)
        if value is not None:
            headers.append((binding.wire_name.encode("latin-1"), _header_text(value, binding.shape).encode("latin-1")))
    if op.output_status_member and result.get(op.output_status_member) is not None:
        status = int(result[op.output_status_member])
    if op.output_payload is not None:
        value = result.get(op.output_payload.member)
        if op.output_payload.shape.type_name in ("blob", "string"):
            body = value if isinstance(value, bytes) else (value or "").encode("utf-8")
            return status, headers, body
        body_obj = to_json_value(value or {}, op.output_payload.shape)
    else:
        body_obj = {}
        ready = type(result) is WireReady
        for key, member, conv in _body_plan(op):
            value = result.get(member)
            if value is not None:
                body_obj[key] = value if conv is None or ready else conv(value)
    headers.append((b"content-type", JSON_CONTENT_TYPE))
    return status, headers, orjson.dumps(body_obj)


_BODY_PLANS: dict[int, list[tuple[str, str, Converter | None]]] = {}


def _body_plan(op: Operation) -> list[tuple[str, str, Converter | None]]:
    """(JSON key, member, converter) for each body member of the output, computed once per operation."""
    plan = _BODY_PLANS.get(id(op))
    if plan is None:
        plan = [(key, b.member, json_converter(b.shape)) for key, b in op.output_body.items()]
        _BODY_PLANS[id(op)] = plan
    return plan


def _header_text(value: Any, shape: Shape) -> str:
    if isinstance(value, dt.datetime):
        return str(format_timestamp(value, shape.serialization.get("timestampFormat", "rfc822")))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def own_error_response(error: ServiceError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A refusal of one of outcrop's own JSON endpoints (``/_outcrop/chaos``, ``/_outcrop/usage``): AWS's
    ``x-amzn-ErrorType`` header, and ``{"__type", "message"}`` in the body."""
    return error.status, _error_headers(error), orjson.dumps({"__type": error.code, "message": error.message})


def error_response(op: Operation | None, error: ServiceError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """AWS's error shape: ``x-amzn-ErrorType``, ``{"message": …}``, and the status the model gives it."""
    status = error.status
    if op is not None and error.code in op.errors:
        status = op.errors[error.code]
    body = {"message": error.message, **error.fields}
    return status, _error_headers(error), orjson.dumps(body)


def _error_headers(error: ServiceError) -> list[tuple[bytes, bytes]]:
    """The headers of every AWS-shaped refusal: its code in ``x-amzn-ErrorType``, and a JSON body."""
    return [(b"x-amzn-errortype", error.code.encode("latin-1")), (b"content-type", JSON_CONTENT_TYPE)]
