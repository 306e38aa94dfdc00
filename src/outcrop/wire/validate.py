"""Validation of parsed input against its shape: every constraint, every error, in AWS's words.

botocore's client-side validator checks only required members, types and ``min``; a server must check
``max``, ``pattern`` and ``enum`` too, and must not trust the client to have checked anything. This walk
collects every violation before reporting, as AWS does::

    2 validation errors detected: Value 'a.b' at 'inferenceProfileName' failed to satisfy constraint:
    Member must satisfy regular expression pattern: ([0-9a-zA-Z][ _-]?)+; Value '5000' at 'maxResults'
    failed to satisfy constraint: Member must have value less than or equal to 1000

Member paths follow AWS's form: ``modelSource.copyFrom``, ``tags.1.member.key`` (lists count from 1).
Values of ``sensitive`` shapes are never echoed. Patterns are Java regular expressions matched against
the whole value; the ``regex`` module understands their ``\\p{L}`` classes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Collection
from functools import lru_cache
from typing import Any

import regex
from botocore.model import Shape

from outcrop.wire.model import once_per_shape

MAX_ECHO = 256

# Where AWS is known to word a pattern violation its own way, keyed by the shape's name (a patch of the
# model's wording, not of its constraints).
PATTERN_MESSAGES = {
    "InferenceProfileModelSourceArn": "copyFrom must be a valid inference profile model source ARN.",
}


# A model ID is checked against its pattern on every invocation, and the same few IDs come back over and
# over: ~3 µs of regular expression for an application profile's ARN. Up to this many short values that
# matched are remembered per pattern (forgotten all at once when full).
_MATCHED_MAX = 1024
_MATCHED_LENGTH = 320


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str] | regex.Pattern[str] | None:
    """The pattern compiled with Java's semantics: ``\\s``, ``\\w`` and ``\\d`` are ASCII-only.

    Python's ``re`` serves every pattern it can compile (it keeps the GIL for the microseconds a match
    takes, where ``regex`` releases and re-acquires it on every call, which costs far more under load);
    ``regex`` serves the few with Unicode classes (``\\p{L}``), which keep Unicode semantics.
    """
    if "\\p" not in pattern:
        try:
            return re.compile(pattern, re.ASCII)
        except re.error:
            pass
    try:
        return regex.compile(pattern, regex.V0)
    except regex.error:
        return None


def _echo(value: Any, shape: Shape) -> str:
    if shape.metadata.get("sensitive"):
        return "Value"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, bytes):
        text = "java.nio.HeapByteBuffer"
    elif isinstance(value, list | dict):
        text = "[...]" if isinstance(value, list) else "{...}"
    else:
        text = str(value)
    if len(text) > MAX_ECHO:
        text = text[:MAX_ECHO] + "..."
    return f"Value '{text}'"


class ShapeValidator:
    """Walks a value and its shape; ``errors`` holds one AWS-worded line per violation."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, value: Any, shape: Shape, path: str, constraint: str) -> None:
        prefix = "Value null" if value is None else _echo(value, shape)
        self.errors.append(f"{prefix} at '{path}' failed to satisfy constraint: Member {constraint}")

    def validate(self, value: Any, shape: Shape, path: str) -> None:
        handler = getattr(self, "_validate_" + shape.type_name, None)
        if handler is not None:
            handler(value, shape, path)

    def _validate_structure(self, value: Any, shape: Shape, path: str) -> None:
        if getattr(shape, "is_document_type", False):  # any JSON value
            return
        if not isinstance(value, dict):
            self.fail(value, shape, path or shape.name, "must be a structure")
            return
        for name in shape.required_members:
            if value.get(name) is None:
                self.fail(None, shape.members[name], _join(path, name), "must not be null")
        set_members = [k for k, v in value.items() if v is not None and k in shape.members]
        if shape.is_tagged_union and len(set_members) != 1:
            choices = ", ".join(shape.members)
            self.errors.append(
                f"Value at '{path or shape.name}' failed to satisfy constraint: Member must have exactly "
                f"one of the following members set: {choices}"
            )
        for name in set_members:
            self.validate(value[name], shape.members[name], _join(path, name))

    def _validate_list(self, value: Any, shape: Shape, path: str) -> None:
        if not isinstance(value, list):
            self.fail(value, shape, path, "must be a list")
            return
        self._length(len(value), value, shape, path)
        for i, item in enumerate(value, 1):
            if item is None:
                self.fail(None, shape.member, f"{path}.{i}.member", "must not be null")
            else:
                self.validate(item, shape.member, f"{path}.{i}.member")

    def _validate_map(self, value: Any, shape: Shape, path: str) -> None:
        if not isinstance(value, dict):
            self.fail(value, shape, path, "must be a map")
            return
        self._length(len(value), value, shape, path)
        for k, v in value.items():
            self.validate(k, shape.key, f"{path}.key")
            if v is None:
                self.fail(None, shape.value, f"{path}.{k}", "must not be null")
            else:
                self.validate(v, shape.value, f"{path}.{k}")

    def _validate_string(self, value: Any, shape: Shape, path: str) -> None:
        if not isinstance(value, str):
            self.fail(value, shape, path, "must be a string")
            return
        self._length(len(value), value, shape, path)
        enum = shape.metadata.get("enum")
        if enum and value not in enum:
            self.fail(value, shape, path, f"must satisfy enum value set: [{', '.join(enum)}]")
        pattern = shape.metadata.get("pattern")
        if pattern is not None:
            compiled = _compiled(pattern)
            matched = compiled is None or compiled.fullmatch(value) is not None
            if not matched and shape.name in PATTERN_MESSAGES:
                self.errors.append(PATTERN_MESSAGES[shape.name])
            elif not matched:
                self.fail(value, shape, path, f"must satisfy regular expression pattern: {pattern}")

    def _validate_integer(self, value: Any, shape: Shape, path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(value, shape, path, "must be a number")
            return
        self._range(value, shape, path)

    _validate_long = _validate_integer

    def _validate_float(self, value: Any, shape: Shape, path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(value, shape, path, "must be a number")
            return
        self._range(value, shape, path)

    _validate_double = _validate_float

    def _validate_boolean(self, value: Any, shape: Shape, path: str) -> None:
        if not isinstance(value, bool):
            self.fail(value, shape, path, "must be a boolean")

    def _validate_blob(self, value: Any, shape: Shape, path: str) -> None:
        if not isinstance(value, bytes | bytearray):
            self.fail(value, shape, path, "must be base64-encoded binary data")
            return
        self._length(len(value), value, shape, path)

    def _validate_timestamp(self, value: Any, shape: Shape, path: str) -> None:
        if not isinstance(value, dt.datetime):
            self.fail(value, shape, path, "must be a timestamp")

    def _length(self, n: int, value: Any, shape: Shape, path: str) -> None:
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
        if lo is not None and n < lo:
            self.fail(value, shape, path, f"must have length greater than or equal to {lo}")
        if hi is not None and n > hi:
            self.fail(value, shape, path, f"must have length less than or equal to {hi}")

    def _range(self, value: float, shape: Shape, path: str) -> None:
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
        if lo is not None and value < lo:
            self.fail(value, shape, path, f"must have value greater than or equal to {lo}")
        if hi is not None and value > hi:
            self.fail(value, shape, path, f"must have value less than or equal to {hi}")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def validation_message(errors: list[str]) -> str:
    n = len(errors)
    if n == 1 and errors[0] in PATTERN_MESSAGES.values():
        return errors[0]
    noun = "error" if n == 1 else "errors"
    return f"{n} validation {noun} detected: " + "; ".join(errors)


def validate_input(
    params: dict[str, Any], shape: Shape | None, prior: list[str] | None = None, checked: Collection[str] = (),
) -> list[str]:
    """Every violation of ``shape`` by ``params``, after any ``prior`` ones found while parsing.

    The common case (valid input) is decided by a check compiled once per shape (``checker``) that tells
    only whether there is any violation; when there is one, the full walk above finds and words every one.
    ``checked``: members already checked while they were read (``outcrop.wire.restjson``), not checked again
    in the common case.
    """
    if not prior and shape is not None:
        try:
            if _members_valid(params, shape, checked) if checked else checker(shape)(params):
                return []
        except RecursionError:  # the compiled check nests deeper per level than the walk: let the walk decide
            pass
    v = ShapeValidator()
    if prior:
        v.errors.extend(prior)
    if shape is not None:
        v.validate(params, shape, "")
    return v.errors


def _members_valid(params: dict[str, Any], shape: Shape, checked: Collection[str]) -> bool:
    """``checker(shape)(params)`` for a structure, leaving out the members in ``checked``."""
    if shape.is_tagged_union:
        return checker(shape)(params)
    for name in shape.required_members:
        if params.get(name) is None:
            return False
    members = shape.members
    for name, value in params.items():
        if value is None or name in checked:
            continue
        member = members.get(name)
        if member is not None and not checker(member)(value):
            return False
    return True


# -- the compiled yes/no check --------------------------------------------------------------------------
# ``checker(shape)(value)`` is True exactly when ``ShapeValidator().validate(value, shape, path)`` would
# record no error: the same checks, in closures built once per shape (no path strings, no dispatch by name).
# Children are compiled on first use, so recursive shapes need no special care.
Check = Callable[[Any], bool]
_CHECKS: dict[int, tuple[Shape, Check]] = {}


def checker(shape: Shape) -> Check:
    """The compiled check of ``shape``: True exactly when the walk would find no violation."""
    return once_per_shape(_CHECKS, shape, _compile)


def _accept(value: Any) -> bool:
    return True


def _lazy(shape: Shape) -> Check:
    """``checker(shape)``, looked up on the first call (then direct)."""
    cell: list[Check] = []

    def check(value: Any) -> bool:
        if not cell:
            cell.append(checker(shape))
        return cell[0](value)

    return check


def _compile(shape: Shape) -> Check:
    kind = shape.type_name
    meta = shape.metadata
    lo, hi = meta.get("min"), meta.get("max")
    if kind == "structure":
        if getattr(shape, "is_document_type", False):
            return _accept
        members = shape.members
        required = tuple(shape.required_members)
        union = bool(shape.is_tagged_union)
        checks = {name: _lazy(member) for name, member in members.items()}

        def check_structure(value: Any) -> bool:
            if type(value) is not dict and not isinstance(value, dict):
                return False
            for name in required:
                if value.get(name) is None:
                    return False
            n = 0
            for k, v in value.items():
                if v is None:
                    continue
                c = checks.get(k)
                if c is None:
                    continue
                n += 1
                if not c(v):
                    return False
            return not union or n == 1

        return check_structure
    if kind == "list":
        item_check = _lazy(shape.member)

        def check_list(value: Any) -> bool:
            if not isinstance(value, list):
                return False
            n = len(value)
            if (lo is not None and n < lo) or (hi is not None and n > hi):
                return False
            return all(item is not None and item_check(item) for item in value)

        return check_list
    if kind == "map":
        key_check, value_check = _lazy(shape.key), _lazy(shape.value)

        def check_map(value: Any) -> bool:
            if not isinstance(value, dict):
                return False
            n = len(value)
            if (lo is not None and n < lo) or (hi is not None and n > hi):
                return False
            return all(key_check(k) and v is not None and value_check(v) for k, v in value.items())

        return check_map
    if kind == "string":
        enum = meta.get("enum")
        enum_set = frozenset(enum) if enum else None
        pattern = meta.get("pattern")
        compiled = _compiled(pattern) if pattern is not None else None
        matched: set[str] = set()  # short values known to match the pattern (see _MATCHED_MAX)

        def check_string(value: Any) -> bool:
            if not isinstance(value, str):
                return False
            n = len(value)
            if (lo is not None and n < lo) or (hi is not None and n > hi):
                return False
            if enum_set is not None and value not in enum_set:
                return False
            if compiled is None or value in matched:
                return True
            if compiled.fullmatch(value) is None:
                return False
            if n <= _MATCHED_LENGTH:
                if len(matched) >= _MATCHED_MAX:
                    matched.clear()
                matched.add(value)
            return True

        return check_string
    if kind in ("integer", "long", "float", "double"):
        types: tuple[type, ...] = (int,) if kind in ("integer", "long") else (int, float)

        def check_number(value: Any) -> bool:
            if isinstance(value, bool) or not isinstance(value, types):
                return False
            return (lo is None or value >= lo) and (hi is None or value <= hi)

        return check_number
    if kind == "boolean":
        return lambda value: isinstance(value, bool)
    if kind == "blob":

        def check_blob(value: Any) -> bool:
            if not isinstance(value, bytes | bytearray):
                return False
            n = len(value)
            return (lo is None or n >= lo) and (hi is None or n <= hi)

        return check_blob
    if kind == "timestamp":
        return lambda value: isinstance(value, dt.datetime)
    if hasattr(ShapeValidator, "_validate_" + kind):  # a type the walk checks but this compiler does not know
        return lambda value: False
    return _accept
