"""IAM-style identity policies: parse a document, evaluate a request against it, word the denial.

The evaluation follows IAM's for identity-based policies: a request is allowed only if some statement
allows it and no statement denies it (an explicit Deny always wins; no match is an implicit deny).

A statement matches when its ``Action`` (or ``NotAction``), its ``Resource`` (or ``NotResource``) and
every one of its conditions match. Actions match case-insensitively and resources case-sensitively,
both with ``*`` (any run of characters) and ``?`` (any one character). Within a condition block every
operator must hold, within an operator every key must hold, and a key holds when the request's value
matches any of the policy's values (for the negated operators: none of them).

Condition keys are matched case-insensitively. A key absent from the request makes a positive operator
false and a negated one true (IAM's documented rule); ``…IfExists`` makes either true; ``ForAnyValue:``
is false and ``ForAllValues:`` true for an absent or empty key; ``Null`` tests presence.

Supported operators: String(Not)Equals(IgnoreCase), String(Not)Like, Arn(Not)Equals, Arn(Not)Like,
Bool and Null, each with ``ForAnyValue:``/``ForAllValues:`` and ``IfExists`` variants. A document using
any other operator (numeric, date, IP) is refused when it is stored, so a policy never means less than
it says. Policy variables (``${aws:username}``) are not substituted: they match only themselves.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

__all__ = [
    "Decision",
    "Policy",
    "PolicyError",
    "Statement",
    "denied_message",
    "evaluate",
    "parse_policy",
]

VERSIONS = ("2012-10-17", "2008-10-17")
MAX_POLICY_BYTES = 6144  # IAM's limit for a user's inline policies


class PolicyError(ValueError):
    """The document is not a policy outcrop can enforce; the message says where and why."""


class Decision(enum.Enum):
    ALLOW = "allow"
    EXPLICIT_DENY = "explicit-deny"
    IMPLICIT_DENY = "implicit-deny"


@lru_cache(maxsize=4096)
def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    # The stdlib ``re``: it keeps the GIL for a match, where ``regex`` gives it up and takes it back on every
    # call (this runs for each statement of a policy on every request in strict mode).
    parts = ("." if ch == "?" else ".*" if ch == "*" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _like(value: str, pattern: str, ignore_case: bool = False) -> bool:
    return _wildcard(pattern, ignore_case).fullmatch(value) is not None


def _arn_like(value: str, pattern: str) -> bool:
    """IAM's ArnEquals and ArnLike (the same operator): each of the six colon-delimited components of the ARN
    is matched separately, with ``*`` and ``?`` wildcards that never reach into the next component."""
    if pattern == "*":
        return True
    parts, patterns = value.split(":", 5), pattern.split(":", 5)
    return len(parts) == len(patterns) == 6 and all(_like(v, p) for v, p in zip(parts, patterns, strict=True))


def _string_equals(value: str, expected: str) -> bool:
    return value == expected


def _string_equals_ignore_case(value: str, expected: str) -> bool:
    return value.casefold() == expected.casefold()


def _bool(value: str, expected: str) -> bool:
    return value.lower() == expected.lower()


# operator → (value matcher, negated)
_OPERATORS = {
    "stringequals": (_string_equals, False),
    "stringnotequals": (_string_equals, True),
    "stringequalsignorecase": (_string_equals_ignore_case, False),
    "stringnotequalsignorecase": (_string_equals_ignore_case, True),
    "stringlike": (_like, False),
    "stringnotlike": (_like, True),
    "arnequals": (_arn_like, False),
    "arnnotequals": (_arn_like, True),
    "arnlike": (_arn_like, False),
    "arnnotlike": (_arn_like, True),
    "bool": (_bool, False),
}


@dataclass(frozen=True)
class Condition:
    operator: str  # lower-case base operator, e.g. "stringlike" or "null"
    qualifier: str  # "", "foranyvalue" or "forallvalues"
    if_exists: bool
    key: str  # lower-case condition key
    values: tuple[str, ...]

    def holds(self, context: Mapping[str, Sequence[str]]) -> bool:
        present = context.get(self.key)
        if self.operator == "null":
            absent = not present
            return any((v.lower() == "true") == absent for v in self.values)
        if not present:
            if self.if_exists:
                return True
            if self.qualifier == "forallvalues":
                return True
            if self.qualifier == "foranyvalue":
                return False
            return _OPERATORS[self.operator][1]
        match, negated = _OPERATORS[self.operator]

        def ok(value: str) -> bool:
            hit = any(match(value, expected) for expected in self.values)
            return not hit if negated else hit

        if self.qualifier == "forallvalues":
            return all(ok(v) for v in present)
        if self.qualifier == "foranyvalue":
            return any(ok(v) for v in present)
        return all(ok(v) for v in present) if negated else any(ok(v) for v in present)


@dataclass(frozen=True)
class Statement:
    allow: bool
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...]
    not_resource: bool
    conditions: tuple[Condition, ...]

    def applies(self, action: str, resource: str, context: Mapping[str, Sequence[str]]) -> bool:
        if any(_like(action, a, ignore_case=True) for a in self.actions) == self.not_action:
            return False
        if any(_like(resource, r) for r in self.resources) == self.not_resource:
            return False
        return all(c.holds(context) for c in self.conditions)


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...]

    def mentions(self, key_prefix: str) -> bool:
        """Whether any condition uses a key starting with ``key_prefix`` (lower-case)."""
        return any(c.key.startswith(key_prefix) for s in self.statements for c in s.conditions)


def evaluate(
    policies: Iterable[Policy], action: str, resource: str, context: Mapping[str, Sequence[str]] | None = None
) -> Decision:
    """IAM's decision for ``action`` on ``resource``; ``context`` maps lower-case condition keys to values."""
    context = context or {}
    allowed = False
    for policy in policies:
        for statement in policy.statements:
            if statement.applies(action, resource, context):
                if not statement.allow:
                    return Decision.EXPLICIT_DENY
                allowed = True
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY


def denied_message(principal_arn: str, action: str, resource: str, decision: Decision) -> str:
    """AccessDeniedException's message, in AWS's words."""
    head = f"User: {principal_arn} is not authorized to perform: {action} on resource: {resource}"
    if decision is Decision.EXPLICIT_DENY:
        return f"{head} with an explicit deny in an identity-based policy"
    return f"{head} because no identity-based policy allows the {action} action"


# ------------------------------------------------------------------------------------------- parsing
def parse_policy(document: str | bytes | Mapping[str, Any]) -> Policy:
    """A checked policy; raises ``PolicyError`` for anything IAM would refuse or outcrop cannot enforce."""
    if isinstance(document, str | bytes):
        if len(document) > MAX_POLICY_BYTES:
            raise PolicyError(f"the policy is longer than {MAX_POLICY_BYTES} characters")
        try:
            document = orjson.loads(document)
        except orjson.JSONDecodeError as e:
            raise PolicyError(f"the policy is not valid JSON: {e}") from None
    if not isinstance(document, Mapping):
        raise PolicyError("a policy is a JSON object")
    unknown = set(document) - {"Version", "Id", "Statement"}
    if unknown:
        raise PolicyError(f"unknown policy element(s): {', '.join(sorted(unknown))}")
    version = document.get("Version", "2008-10-17")
    if version not in VERSIONS:
        raise PolicyError(f"Version must be one of {', '.join(VERSIONS)}, not {version!r}")
    raw = document.get("Statement")
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise PolicyError("Statement must be a statement object or a non-empty list of them")
    return Policy(tuple(_statement(s, i) for i, s in enumerate(raw)))


_STATEMENT_KEYS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}


def _statement(raw: Any, index: int) -> Statement:
    where = f"Statement[{index}]"
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where} is not an object")
    if "Principal" in raw or "NotPrincipal" in raw:
        raise PolicyError(f"{where}: an identity policy cannot name a Principal")
    unknown = set(raw) - _STATEMENT_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown element(s): {', '.join(sorted(unknown))}")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"{where}: Effect must be Allow or Deny")
    actions, not_action = _one_of(raw, "Action", "NotAction", where)
    for action in actions:
        if action != "*" and ":" not in action:
            raise PolicyError(f"{where}: action {action!r} must be service:Action (wildcards allowed) or *")
    resources, not_resource = _one_of(raw, "Resource", "NotResource", where)
    return Statement(effect == "Allow", actions, not_action, resources, not_resource,
                     _conditions(raw.get("Condition"), where))


def _one_of(raw: Mapping[str, Any], name: str, negated: str, where: str) -> tuple[tuple[str, ...], bool]:
    if (name in raw) == (negated in raw):
        raise PolicyError(f"{where} needs exactly one of {name} and {negated}")
    key = name if name in raw else negated
    return _strings(raw[key], f"{where}.{key}", allow_empty=False), key == negated


def _strings(value: Any, where: str, allow_empty: bool = True) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, str | int | float):
            out.append(str(item))
        else:
            raise PolicyError(f"{where}: {item!r} is not a string")
    if not out and not allow_empty:
        raise PolicyError(f"{where} is empty")
    return tuple(out)


def _conditions(raw: Any, where: str) -> tuple[Condition, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}.Condition must be an object")
    out = []
    for name, block in raw.items():
        qualifier, _, operator = name.rpartition(":")
        qualifier = qualifier.lower()
        if qualifier not in ("", "foranyvalue", "forallvalues"):
            raise PolicyError(f"{where}.Condition: unknown set operator {qualifier!r} in {name!r}")
        operator = operator.lower()
        if_exists = operator.endswith("ifexists") and operator != "null"
        if if_exists:
            operator = operator[: -len("ifexists")]
        if operator not in _OPERATORS and operator != "null":
            raise PolicyError(f"{where}.Condition: outcrop does not support the condition operator {name!r}")
        if not isinstance(block, Mapping) or not block:
            raise PolicyError(f"{where}.Condition.{name} must be an object of condition keys")
        for key, values in block.items():
            if not isinstance(key, str) or not key:
                raise PolicyError(f"{where}.Condition.{name}: a condition key must be a string")
            out.append(Condition(operator, qualifier, if_exists, key.lower(),
                                 _strings(values, f"{where}.Condition.{name}.{key}", allow_empty=False)))
    return tuple(out)
