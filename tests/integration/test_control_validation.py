"""Property-based validation of every constrained input member of the control-plane operations.

The constraints are read from botocore's service model, never copied by hand: for each member with a
``min``, ``max``, ``pattern``, ``enum``, integer range or ``required`` flag, hypothesis generates values
that break exactly that constraint, sends them with a non-validating boto3 client, and expects a
ValidationException (HTTP 400) in AWS's form, naming the member. Values that satisfy the model are
accepted: whatever the server answers, it is not a constraint violation.

One server (SQLite) serves the whole module: validation does not depend on the database.
"""

from __future__ import annotations

import copy
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import botocore.session
import pytest
from botocore import xform_name
from botocore.model import Shape
from ctl_helpers import HAIKU, HAIKU_FM_USE1, US_HAIKU_ID, module_server, unique_name
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

OPERATIONS = (
    "CreateInferenceProfile",
    "GetInferenceProfile",
    "ListInferenceProfiles",
    "DeleteInferenceProfile",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
    "ListFoundationModels",
    "GetFoundationModel",
)
MODEL = botocore.session.get_session().get_service_model("bedrock")
COPY_FROM_MESSAGE = "copyFrom must be a valid inference profile model source ARN."
EXAMPLES = settings(
    max_examples=12, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
# Printable ASCII and the whitespace Java's ``\s`` knows: values the model's patterns mean the same in
# every regex dialect.
SAFE_ALPHABET = string.ascii_letters + string.digits + string.punctuation + " \t\n"
# Characters that no constrained string of these operations allows everywhere; one is slipped into an
# otherwise arbitrary value to break its pattern.
POISON = [" ", "\t", "!", "#", ",", '"', "\\", "?", "&", "%", "é", "中", "\u2603", "(", "*"]


# ----------------------------------------------------------------------------------- the members
@dataclass(frozen=True)
class Member:
    """One constrained member: where it sits in the input, its shape, and how it is bound."""

    operation: str
    path: tuple[str, ...]  # "*" stands for a list item
    shape: Shape
    location: str | None
    required: bool

    @property
    def label(self) -> str:
        return ".".join(self.path).replace(".*", "[]")

    def wire_path(self, index: int) -> str:
        """AWS's name for the member in messages: ``tags.2.member.key``."""
        return ".".join(f"{index}.member" if p == "*" else p for p in self.path)

    def constraints(self) -> list[str]:
        md = self.shape.metadata
        found = [k for k in ("min", "max", "pattern", "enum") if k in md]
        if md.get("min") == 0 and self.shape.type_name != "integer":
            found.remove("min")  # no length is below zero: nothing to break
        if self.required and self.location != "uri":
            found.append("required")
        return found


def _members(op: str, shape: Shape, path: tuple[str, ...], required: bool, location: str | None) -> Iterator[Member]:
    yield Member(op, path, shape, location, required)
    if shape.type_name == "structure":
        for name, sub in shape.members.items():
            yield from _members(op, sub, (*path, name), name in shape.required_members,
                                sub.serialization.get("location"))
    elif shape.type_name == "list":
        yield from _members(op, shape.member, (*path, "*"), False, None)


def constrained_members() -> list[Member]:
    out = []
    for op in OPERATIONS:
        shape = MODEL.operation_model(op).input_shape
        for name, sub in shape.members.items():
            for m in _members(op, sub, (name,), name in shape.required_members, sub.serialization.get("location")):
                if m.constraints():
                    out.append(m)
    return out


MEMBERS = constrained_members()
CASES = [(m, c) for m in MEMBERS for c in m.constraints()]


def test_every_operation_has_constrained_members() -> None:
    assert {m.operation for m in MEMBERS} == set(OPERATIONS)
    labels = {(m.operation, m.label) for m in MEMBERS}
    # Spot checks that the walk reaches nested members.
    assert ("CreateInferenceProfile", "modelSource.copyFrom") in labels
    assert ("CreateInferenceProfile", "tags[].key") in labels
    assert ("UntagResource", "tagKeys[]") in labels


# ----------------------------------------------------------------------------------- the server
@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    yield from module_server("sqlite", tmp_path_factory.mktemp("validation"))


@pytest.fixture(scope="module")
def raw(srv: Any) -> Any:
    """A client that sends whatever it is given (botocore's own validation off)."""
    return srv.client("bedrock", validate=False)


@pytest.fixture(scope="module")
def app_arn(srv: Any) -> str:
    resp = srv.client("bedrock").create_inference_profile(
        inferenceProfileName="validation-target", modelSource={"copyFrom": HAIKU_FM_USE1})
    return str(resp["inferenceProfileArn"])


def baseline(op: str, app_arn: str) -> dict[str, Any]:
    """A request of ``op`` that satisfies every constraint."""
    return {
        "CreateInferenceProfile": {"inferenceProfileName": unique_name(), "modelSource": {"copyFrom": HAIKU_FM_USE1}},
        "GetInferenceProfile": {"inferenceProfileIdentifier": US_HAIKU_ID},
        "ListInferenceProfiles": {},
        "DeleteInferenceProfile": {"inferenceProfileIdentifier": "zzzzzzzzzzzz"},
        "TagResource": {"resourceARN": app_arn, "tags": [{"key": "k", "value": "v"}]},
        "UntagResource": {"resourceARN": app_arn, "tagKeys": ["k"]},
        "ListTagsForResource": {"resourceARN": app_arn},
        "ListFoundationModels": {},
        "GetFoundationModel": {"modelIdentifier": HAIKU},
    }[op]


def with_value(params: dict[str, Any], member: Member, value: Any, index: int, count: int) -> dict[str, Any]:
    """``params`` with ``value`` at the member's path; a list item goes at ``index`` (1-based) of ``count``."""
    out = copy.deepcopy(params)
    path = member.path
    if "*" not in path:
        target = out
        for p in path[:-1]:
            target = target.setdefault(p, {})
        target[path[-1]] = value
        return out
    star = path.index("*")
    list_name, rest = path[:star], path[star + 1 :]
    filler = _valid_item(member, rest)
    items = [copy.deepcopy(filler(i)) for i in range(count)]
    if rest:
        items[index - 1][rest[0]] = value
    else:
        items[index - 1] = value
    target = out
    for p in list_name[:-1]:
        target = target.setdefault(p, {})
    target[list_name[-1]] = items
    return out


def _valid_item(member: Member, rest: tuple[str, ...]) -> Any:
    if rest:  # a Tag structure
        return lambda i: {"key": f"key{i}", "value": f"v{i}"}
    return lambda i: f"key{i}"


def without(params: dict[str, Any], member: Member) -> dict[str, Any]:
    out = copy.deepcopy(params)
    if "*" in member.path:  # a required member of a list item: the item lacks it
        out = with_value(out, member, None, 1, 1)
        star = member.path.index("*")
        out[member.path[0]][0].pop(member.path[star + 1])
        return out
    target = out
    for p in member.path[:-1]:
        target = target.setdefault(p, {})
    target.pop(member.path[-1], None)
    return out


def call(client: Any, op: str, params: dict[str, Any]) -> tuple[int, str, str]:
    from botocore.exceptions import ClientError

    try:
        resp = getattr(client, xform_name(op))(**params)
    except ClientError as e:
        r = e.response
        return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"], r["Error"].get("Message", "")
    return resp["ResponseMetadata"]["HTTPStatusCode"], "", ""


# ------------------------------------------------------------------------------ invalid values
def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def _length_bounds(shape: Shape) -> tuple[int, int | None]:
    return int(shape.metadata.get("min", 0)), shape.metadata.get("max")


def invalid_values(member: Member, constraint: str) -> st.SearchStrategy[Any]:
    shape = member.shape
    md = shape.metadata
    kind = shape.type_name
    if kind == "integer":
        if constraint == "min":
            return st.integers(-(2**31), md["min"] - 1)
        return st.integers(md["max"] + 1, 2**31 - 1)
    if kind == "list":
        item = member.shape.member
        if item.type_name == "structure":
            make = lambda n: [{"key": f"key{i}", "value": "v"} for i in range(n)]  # noqa: E731
        else:
            make = lambda n: [f"key{i}" for i in range(n)]  # noqa: E731
        return st.integers(md["max"] + 1, md["max"] + 20).map(make)
    # strings
    lo, hi = _length_bounds(shape)
    if constraint == "min":
        return st.text(SAFE_ALPHABET, max_size=lo - 1)
    if constraint == "max":
        return st.integers(hi + 1, hi + 300).map(lambda n: "a" * n)
    if constraint == "enum":
        return st.text(SAFE_ALPHABET, min_size=1, max_size=30).filter(lambda s: s not in md["enum"])
    # pattern: an arbitrary value of an allowed length with a poisoned character slipped in
    top = min(hi or 64, 64)
    return (
        st.tuples(st.text(SAFE_ALPHABET, max_size=max(top - 1, 0)), st.sampled_from(POISON), st.integers(0, 64))
        .map(lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :])
        .filter(lambda s: len(s) >= max(lo, 1) and (hi is None or len(s) <= hi) and not _matches(md["pattern"], s))
    )


EXPECTED_TEXT = {
    "min": "Member must have {what} greater than or equal to {n}",
    "max": "Member must have {what} less than or equal to {n}",
    "pattern": "Member must satisfy regular expression pattern: {pattern}",
    "enum": "Member must satisfy enum value set: [",
    "required": "Member must not be null",
}
HEADER = re.compile(r"^(1 validation error|[2-9] validation errors) detected: ")


def expected_text(member: Member, constraint: str) -> str:
    md = member.shape.metadata
    what = "value" if member.shape.type_name == "integer" else "length"
    return EXPECTED_TEXT[constraint].format(what=what, n=md.get(constraint), pattern=md.get("pattern"))


@pytest.mark.parametrize(("member", "constraint"), [c for c in CASES if c[1] != "required"],
                         ids=[f"{m.operation}-{m.label}-{c}" for m, c in CASES if c != "required"])
def test_value_breaking_a_constraint_is_validation_exception_naming_the_member(
    raw: Any, app_arn: str, member: Member, constraint: str
) -> None:
    base = baseline(member.operation, app_arn)

    @EXAMPLES
    @given(value=invalid_values(member, constraint), position=st.integers(1, 3))
    def check(value: Any, position: int) -> None:
        count = position if "*" in member.path else 1
        params = with_value(base, member, value, position, count)
        status, code, message = call(raw, member.operation, params)
        assert (status, code) == (400, "ValidationException"), (params, message)
        path = member.wire_path(position)
        if member.label == "modelSource.copyFrom" and constraint == "pattern" and HEADER.match(message) is None:
            assert message == COPY_FROM_MESSAGE
            return
        assert HEADER.match(message), message
        assert f" at '{path}' failed to satisfy constraint: " in message, message
        if constraint == "pattern" and member.label == "modelSource.copyFrom":
            assert COPY_FROM_MESSAGE in message
        else:
            assert expected_text(member, constraint) in message, message
        if member.shape.metadata.get("sensitive") and isinstance(value, str) and len(value) > 3:
            assert value not in message  # sensitive values are never echoed

    check()


@pytest.mark.parametrize("member", [m for m, c in CASES if c == "required"],
                         ids=[f"{m.operation}-{m.label}" for m, c in CASES if c == "required"])
def test_missing_required_member_is_validation_exception_naming_it(raw: Any, app_arn: str, member: Member) -> None:
    params = without(baseline(member.operation, app_arn), member)
    status, code, message = call(raw, member.operation, params)
    assert (status, code) == (400, "ValidationException"), message
    assert HEADER.match(message)
    assert f"Value null at '{member.wire_path(1)}' failed to satisfy constraint: Member must not be null" in message


def test_model_source_without_copy_from_is_validation_exception_naming_it(raw: Any) -> None:
    status, code, message = call(raw, "CreateInferenceProfile",
                                 {"inferenceProfileName": unique_name(), "modelSource": {}})
    assert (status, code) == (400, "ValidationException")
    assert "at 'modelSource' failed to satisfy constraint" in message and "copyFrom" in message


def test_several_violations_are_reported_together(raw: Any) -> None:
    status, code, message = call(raw, "ListInferenceProfiles", {"maxResults": 5000, "typeEquals": "BOTH"})
    assert (status, code) == (400, "ValidationException")
    assert message.startswith("2 validation errors detected: ")
    assert "at 'maxResults'" in message and "at 'typeEquals'" in message


# -------------------------------------------------------------------------------- valid values
def valid_values(member: Member) -> st.SearchStrategy[Any]:
    shape = member.shape
    md = shape.metadata
    kind = shape.type_name
    if kind == "integer":
        return st.integers(md.get("min", -(2**31)), md.get("max", 2**31 - 1))
    if kind == "list":
        lo, hi = _length_bounds(shape)
        size = st.integers(lo, min(hi or 5, 5))
        if shape.member.type_name == "structure":
            return size.map(lambda n: [{"key": f"key{i}", "value": f"v{i}"} for i in range(n)])
        return size.map(lambda n: [f"key{i}" for i in range(n)])
    if "enum" in md:
        return st.sampled_from(md["enum"])
    lo, hi = _length_bounds(shape)
    if "pattern" in md:
        base = st.from_regex(md["pattern"], fullmatch=True, alphabet=SAFE_ALPHABET)
    else:
        base = st.text(SAFE_ALPHABET, min_size=lo, max_size=min(hi or 64, 64))
    strat = base.filter(lambda s: lo <= len(s) and (hi is None or len(s) <= hi))
    if member.label in ("tags[].key", "tagKeys[]"):
        # ``aws:`` keys are AWS's (decisions table), not a model constraint.
        strat = strat.filter(lambda s: not s.lower().startswith("aws:"))
    return strat


# nextToken: any token outcrop did not issue is refused by decision, whatever its form (tested with real
# tokens in test_control_decisions.py).
VALID_CASES = [m for m in MEMBERS if m.shape.type_name != "structure" and m.label != "nextToken"]


def _constraint_violation(code: str, message: str) -> bool:
    return code == "ValidationException" and "failed to satisfy constraint" in message


@pytest.mark.parametrize("member", VALID_CASES, ids=[f"{m.operation}-{m.label}" for m in VALID_CASES])
def test_value_satisfying_the_model_is_accepted(raw: Any, app_arn: str, member: Member) -> None:
    base = baseline(member.operation, app_arn)

    @EXAMPLES
    @given(value=valid_values(member))
    def check(value: Any) -> None:
        params = with_value(base, member, value, 1, 1)
        if member.operation == "CreateInferenceProfile" and member.label != "inferenceProfileName":
            params["inferenceProfileName"] = unique_name()
        status, code, message = call(raw, member.operation, params)
        assert status < 500, (params, code, message)
        assert not _constraint_violation(code, message), (params, message)
        if code == "ValidationException":
            # The only refusals of well-formed values are the ones the decisions table makes, and Bedrock's
            # of a foundation-model ARN that names an account (test_control_decisions.py).
            if member.label == "modelSource.copyFrom" and re.search(r":[0-9]{12}:foundation-model/", value):
                assert message == "copyFrom must be a valid inference profile model source ARN.", (params, message)
                return
            assert member.operation == "GetFoundationModel" and message == "The provided model identifier is invalid.", (
                params, message)

    check()


def test_known_foundation_model_identifiers_are_accepted(raw: Any) -> None:
    models = raw.list_foundation_models()["modelSummaries"]
    for m in models:
        for identifier in (m["modelId"], m["modelArn"]):
            status, code, message = call(raw, "GetFoundationModel", {"modelIdentifier": identifier})
            assert (status, code) == (200, ""), (identifier, message)
