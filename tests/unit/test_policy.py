"""IAM-style policy evaluation, table-driven: effects, wildcards, Not-elements, conditions, messages."""

from __future__ import annotations

from typing import Any

import pytest

from outcrop.auth.policy import Decision, PolicyError, denied_message, evaluate, parse_policy

ALLOW, DENY, IMPLICIT = Decision.ALLOW, Decision.EXPLICIT_DENY, Decision.IMPLICIT_DENY
PROFILE = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/abcd1234efgh"
SYSTEM = "arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
MODEL_E1 = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"
MODEL_W2 = "arn:aws:bedrock:us-west-2::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"


def stmt(effect: str = "Allow", action: Any = "bedrock:*", resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": effect, "Action": action, "Resource": resource, **extra}


def doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def decide(policy: dict[str, Any], action: str, resource: str, context: dict[str, list[str]] | None = None) -> Decision:
    return evaluate([parse_policy(policy)], action, resource, context)


CASES = [
    # (name, policy, action, resource, context, expected)
    ("allow all", doc(stmt()), "bedrock:GetInferenceProfile", PROFILE, None, ALLOW),
    ("default deny", doc(stmt(action="bedrock:ListInferenceProfiles")), "bedrock:GetInferenceProfile", PROFILE, None, IMPLICIT),
    ("explicit deny wins", doc(stmt(), stmt("Deny", "bedrock:DeleteInferenceProfile")),
     "bedrock:DeleteInferenceProfile", PROFILE, None, DENY),
    ("deny order does not matter", doc(stmt("Deny", "bedrock:Delete*"), stmt()),
     "bedrock:DeleteInferenceProfile", PROFILE, None, DENY),
    ("deny of another action", doc(stmt(), stmt("Deny", "bedrock:DeleteInferenceProfile")),
     "bedrock:GetInferenceProfile", PROFILE, None, ALLOW),
    ("action wildcard *", doc(stmt(action="bedrock:*InferenceProfile")), "bedrock:GetInferenceProfile", PROFILE, None, ALLOW),
    ("action wildcard ?", doc(stmt(action="bedrock:?etInferenceProfile")), "bedrock:GetInferenceProfile", PROFILE, None, ALLOW),
    ("action is case-insensitive", doc(stmt(action="BEDROCK:getinferenceprofile")), "bedrock:GetInferenceProfile", PROFILE, None, ALLOW),
    ("action list", doc(stmt(action=["bedrock:ListInferenceProfiles", "bedrock:GetInferenceProfile"])),
     "bedrock:GetInferenceProfile", PROFILE, None, ALLOW),
    ("other service", doc(stmt(action="s3:*")), "bedrock:GetInferenceProfile", PROFILE, None, IMPLICIT),
    ("star action", doc(stmt(action="*")), "bedrock:InvokeModel", MODEL_E1, None, ALLOW),
    ("NotAction allows the rest", doc({"Effect": "Allow", "NotAction": "bedrock:Delete*", "Resource": "*"}),
     "bedrock:GetInferenceProfile", PROFILE, None, ALLOW),
    ("NotAction excludes", doc({"Effect": "Allow", "NotAction": "bedrock:Delete*", "Resource": "*"}),
     "bedrock:DeleteInferenceProfile", PROFILE, None, IMPLICIT),
    ("resource exact", doc(stmt(resource=PROFILE)), "bedrock:GetInferenceProfile", PROFILE, None, ALLOW),
    ("resource wildcard", doc(stmt(resource="arn:aws:bedrock:*:*:application-inference-profile/*")),
     "bedrock:GetInferenceProfile", PROFILE, None, ALLOW),
    ("resource wildcard other kind", doc(stmt(resource="arn:aws:bedrock:*:*:application-inference-profile/*")),
     "bedrock:GetInferenceProfile", SYSTEM, None, IMPLICIT),
    ("resource is case-sensitive", doc(stmt(resource=PROFILE.upper())), "bedrock:GetInferenceProfile", PROFILE, None, IMPLICIT),
    ("resource ? is one character", doc(stmt(resource=PROFILE[:-1] + "?")), "bedrock:GetInferenceProfile", PROFILE, None, ALLOW),
    ("resource ? is not two", doc(stmt(resource=PROFILE[:-2] + "?")), "bedrock:GetInferenceProfile", PROFILE, None, IMPLICIT),
    ("regex metacharacters are literal", doc(stmt(resource="arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1.0")),
     "bedrock:InvokeModel", MODEL_E1, None, IMPLICIT),
    ("NotResource", doc({"Effect": "Deny", "Action": "bedrock:*", "NotResource": MODEL_E1}, stmt()),
     "bedrock:InvokeModel", MODEL_W2, None, DENY),
    ("NotResource spares the named one", doc({"Effect": "Deny", "Action": "bedrock:*", "NotResource": MODEL_E1}, stmt()),
     "bedrock:InvokeModel", MODEL_E1, None, ALLOW),
    # conditions
    ("StringEquals match", doc(stmt(Condition={"StringEquals": {"aws:RequestedRegion": "us-east-1"}})),
     "bedrock:InvokeModel", MODEL_E1, {"aws:requestedregion": ["us-east-1"]}, ALLOW),
    ("StringEquals miss", doc(stmt(Condition={"StringEquals": {"aws:RequestedRegion": "us-east-1"}})),
     "bedrock:InvokeModel", MODEL_E1, {"aws:requestedregion": ["eu-west-1"]}, IMPLICIT),
    ("StringEquals any of several values", doc(stmt(Condition={"StringEquals": {"aws:RequestedRegion": ["eu-west-1", "us-east-1"]}})),
     "bedrock:InvokeModel", MODEL_E1, {"aws:requestedregion": ["us-east-1"]}, ALLOW),
    ("StringEquals is case-sensitive in values", doc(stmt(Condition={"StringEquals": {"aws:RequestedRegion": "US-EAST-1"}})),
     "bedrock:InvokeModel", MODEL_E1, {"aws:requestedregion": ["us-east-1"]}, IMPLICIT),
    ("condition keys are case-insensitive", doc(stmt(Condition={"StringEquals": {"AWS:REQUESTEDREGION": "us-east-1"}})),
     "bedrock:InvokeModel", MODEL_E1, {"aws:requestedregion": ["us-east-1"]}, ALLOW),
    ("StringEqualsIgnoreCase", doc(stmt(Condition={"StringEqualsIgnoreCase": {"aws:ResourceTag/team": "RED"}})),
     "bedrock:GetInferenceProfile", PROFILE, {"aws:resourcetag/team": ["red"]}, ALLOW),
    ("StringEquals missing key is false", doc(stmt(Condition={"StringEquals": {"aws:ResourceTag/team": "red"}})),
     "bedrock:GetInferenceProfile", PROFILE, {}, IMPLICIT),
    ("StringEqualsIfExists missing key is true", doc(stmt(Condition={"StringEqualsIfExists": {"aws:ResourceTag/team": "red"}})),
     "bedrock:GetInferenceProfile", PROFILE, {}, ALLOW),
    ("StringEqualsIfExists present key must match", doc(stmt(Condition={"StringEqualsIfExists": {"aws:ResourceTag/team": "red"}})),
     "bedrock:GetInferenceProfile", PROFILE, {"aws:resourcetag/team": ["blue"]}, IMPLICIT),
    ("StringNotEquals", doc(stmt(Condition={"StringNotEquals": {"aws:RequestedRegion": ["us-east-1", "us-west-2"]}})),
     "bedrock:InvokeModel", MODEL_E1, {"aws:requestedregion": ["eu-west-1"]}, ALLOW),
    ("StringNotEquals none of the values", doc(stmt(Condition={"StringNotEquals": {"aws:RequestedRegion": ["us-east-1", "us-west-2"]}})),
     "bedrock:InvokeModel", MODEL_E1, {"aws:requestedregion": ["us-west-2"]}, IMPLICIT),
    ("StringNotEquals missing key is true", doc(stmt(Condition={"StringNotEquals": {"aws:ResourceTag/team": "red"}})),
     "bedrock:GetInferenceProfile", PROFILE, {}, ALLOW),
    ("region lock deny", doc(stmt(), stmt("Deny", "*", Condition={"StringNotEquals": {"aws:RequestedRegion": ["us-east-1"]}})),
     "bedrock:InvokeModel", MODEL_E1, {"aws:requestedregion": ["eu-west-1"]}, DENY),
    ("region lock spares the Region", doc(stmt(), stmt("Deny", "*", Condition={"StringNotEquals": {"aws:RequestedRegion": ["us-east-1"]}})),
     "bedrock:InvokeModel", MODEL_E1, {"aws:requestedregion": ["us-east-1"]}, ALLOW),
    ("StringLike", doc(stmt(Condition={"StringLike": {"bedrock:InferenceProfileArn": "arn:aws:bedrock:*:111122223333:application-inference-profile/*"}})),
     "bedrock:InvokeModel", MODEL_W2, {"bedrock:inferenceprofilearn": [PROFILE]}, ALLOW),
    ("StringLike missing key", doc(stmt(Condition={"StringLike": {"bedrock:InferenceProfileArn": "*"}})),
     "bedrock:InvokeModel", MODEL_W2, {}, IMPLICIT),
    ("StringNotLike", doc(stmt(Condition={"StringNotLike": {"aws:ResourceTag/env": "prod*"}})),
     "bedrock:GetInferenceProfile", PROFILE, {"aws:resourcetag/env": ["production"]}, IMPLICIT),
    ("ArnLike", doc(stmt(Condition={"ArnLike": {"bedrock:InferenceProfileArn": "arn:aws:bedrock:us-east-1:*:*"}})),
     "bedrock:InvokeModel", MODEL_W2, {"bedrock:inferenceprofilearn": [PROFILE]}, ALLOW),
    ("two keys in one operator are ANDed", doc(stmt(Condition={"StringEquals": {"aws:RequestedRegion": "us-east-1", "aws:ResourceTag/team": "red"}})),
     "bedrock:GetInferenceProfile", PROFILE, {"aws:requestedregion": ["us-east-1"], "aws:resourcetag/team": ["blue"]}, IMPLICIT),
    ("two operators are ANDed", doc(stmt(Condition={"StringEquals": {"aws:RequestedRegion": "us-east-1"}, "StringLike": {"aws:ResourceTag/team": "r*"}})),
     "bedrock:GetInferenceProfile", PROFILE, {"aws:requestedregion": ["us-east-1"], "aws:resourcetag/team": ["red"]}, ALLOW),
    ("ForAnyValue:StringEquals", doc(stmt(Condition={"ForAnyValue:StringEquals": {"aws:TagKeys": ["team", "env"]}})),
     "bedrock:TagResource", PROFILE, {"aws:tagkeys": ["cost", "env"]}, ALLOW),
    ("ForAnyValue:StringEquals none", doc(stmt(Condition={"ForAnyValue:StringEquals": {"aws:TagKeys": ["team", "env"]}})),
     "bedrock:TagResource", PROFILE, {"aws:tagkeys": ["cost"]}, IMPLICIT),
    ("ForAnyValue missing key is false", doc(stmt(Condition={"ForAnyValue:StringEquals": {"aws:TagKeys": ["team"]}})),
     "bedrock:TagResource", PROFILE, {}, IMPLICIT),
    ("ForAllValues:StringEquals", doc(stmt(Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["team", "env"]}})),
     "bedrock:TagResource", PROFILE, {"aws:tagkeys": ["team", "env"]}, ALLOW),
    ("ForAllValues:StringEquals one outside", doc(stmt(Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["team", "env"]}})),
     "bedrock:TagResource", PROFILE, {"aws:tagkeys": ["team", "cost"]}, IMPLICIT),
    ("ForAllValues missing key is true", doc(stmt(Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}})),
     "bedrock:TagResource", PROFILE, {}, ALLOW),
    ("ForAllValues:StringLike", doc(stmt(Condition={"ForAllValues:StringLike": {"aws:TagKeys": ["team*"]}})),
     "bedrock:TagResource", PROFILE, {"aws:tagkeys": ["team", "teamlead"]}, ALLOW),
    ("ForAnyValue:StringNotEquals", doc(stmt("Deny", Condition={"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["team"]}}), stmt()),
     "bedrock:TagResource", PROFILE, {"aws:tagkeys": ["team", "cost"]}, DENY),
    ("ForAllValues:StringNotEquals", doc(stmt(Condition={"ForAllValues:StringNotEquals": {"aws:TagKeys": ["secret"]}})),
     "bedrock:TagResource", PROFILE, {"aws:tagkeys": ["team", "cost"]}, ALLOW),
    ("RequestTag", doc(stmt(Condition={"StringEquals": {"aws:RequestTag/team": "red"}})),
     "bedrock:CreateInferenceProfile", PROFILE, {"aws:requesttag/team": ["red"]}, ALLOW),
    ("Null true: key absent", doc(stmt(Condition={"Null": {"aws:RequestTag/team": "true"}})),
     "bedrock:CreateInferenceProfile", PROFILE, {}, ALLOW),
    ("Null true: key present", doc(stmt(Condition={"Null": {"aws:RequestTag/team": "true"}})),
     "bedrock:CreateInferenceProfile", PROFILE, {"aws:requesttag/team": ["red"]}, IMPLICIT),
    ("Null false requires the tag", doc(stmt("Deny", Condition={"Null": {"aws:RequestTag/team": "true"}}), stmt()),
     "bedrock:CreateInferenceProfile", PROFILE, {}, DENY),
    ("Null as JSON boolean", doc(stmt(Condition={"Null": {"aws:RequestTag/team": False}})),
     "bedrock:CreateInferenceProfile", PROFILE, {"aws:requesttag/team": ["red"]}, ALLOW),
    ("Bool", doc(stmt(Condition={"Bool": {"aws:SecureTransport": "false"}})),
     "bedrock:InvokeModel", MODEL_E1, {"aws:securetransport": ["false"]}, ALLOW),
    ("Bool missing", doc(stmt(Condition={"Bool": {"aws:SecureTransport": "true"}})),
     "bedrock:InvokeModel", MODEL_E1, {}, IMPLICIT),
    ("profile plus model in Region (AWS prerequisite policy)",
     doc(stmt(action="bedrock:InvokeModel*", resource=[PROFILE]),
         stmt(action="bedrock:InvokeModel*", resource="arn:aws:bedrock:*::foundation-model/*",
              Condition={"StringLike": {"bedrock:InferenceProfileArn": PROFILE}})),
     "bedrock:InvokeModel", MODEL_W2, {"bedrock:inferenceprofilearn": [PROFILE], "aws:requestedregion": ["us-east-1"]}, ALLOW),
    ("model called directly is not covered by the profile condition",
     doc(stmt(action="bedrock:InvokeModel*", resource="arn:aws:bedrock:*::foundation-model/*",
              Condition={"StringLike": {"bedrock:InferenceProfileArn": PROFILE}})),
     "bedrock:InvokeModel", MODEL_E1, {"aws:requestedregion": ["us-east-1"]}, IMPLICIT),
    ("single statement object", {"Version": "2012-10-17", "Statement": stmt()}, "bedrock:GetInferenceProfile", PROFILE, None, ALLOW),
    ("several policies: deny in either", None, "bedrock:GetInferenceProfile", PROFILE, None, DENY),
]


@pytest.mark.parametrize(("name", "policy", "action", "resource", "context", "expected"), CASES, ids=[c[0] for c in CASES])
def test_evaluation(name, policy, action, resource, context, expected):
    if policy is None:
        policies = [parse_policy(doc(stmt())), parse_policy(doc(stmt("Deny", "bedrock:Get*")))]
        assert evaluate(policies, action, resource, context) is expected
        return
    assert decide(policy, action, resource, context) is expected


BAD = [
    ("not JSON", "{", "not valid JSON"),
    ("not an object", "[]", "JSON object"),
    ("unknown version", '{"Version": "2020-01-01", "Statement": []}', "Version"),
    ("no statement", '{"Version": "2012-10-17"}', "Statement"),
    ("empty statement list", '{"Version": "2012-10-17", "Statement": []}', "Statement"),
    ("bad effect", doc({"Effect": "Maybe", "Action": "*", "Resource": "*"}), "Effect"),
    ("both Action and NotAction", doc({"Effect": "Allow", "Action": "*", "NotAction": "*", "Resource": "*"}), "exactly one"),
    ("no resource", doc({"Effect": "Allow", "Action": "*"}), "exactly one"),
    ("principal in identity policy", doc({"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}), "Principal"),
    ("unknown element", doc({"Effect": "Allow", "Action": "*", "Resource": "*", "Foo": 1}), "unknown"),
    ("action without service", doc(stmt(action="GetInferenceProfile")), "service:Action"),
    ("unsupported operator", doc(stmt(Condition={"NumericLessThan": {"aws:EpochTime": "1"}})), "does not support"),
    ("unknown set operator", doc(stmt(Condition={"ForSomeValues:StringEquals": {"aws:TagKeys": "a"}})), "set operator"),
    ("empty condition values", doc(stmt(Condition={"StringEquals": {"aws:RequestedRegion": []}})), "empty"),
    ("non-string value", doc(stmt(Condition={"StringEquals": {"aws:RequestedRegion": [{"a": 1}]}})), "not a string"),
    ("too long", '{"Version": "2012-10-17", "Statement": [' + ",".join(['{"Effect":"Allow","Action":"*","Resource":"*"}'] * 200) + "]}", "longer"),
]


@pytest.mark.parametrize(("name", "policy", "message"), BAD, ids=[b[0] for b in BAD])
def test_refuses_invalid_policies(name, policy, message):
    with pytest.raises(PolicyError, match=message):
        parse_policy(policy)


def test_denied_message_for_no_allow_matches_aws_wording():
    message = denied_message("arn:aws:iam::111122223333:user/alice", "bedrock:InvokeModel", MODEL_E1, IMPLICIT)
    assert message == (
        "User: arn:aws:iam::111122223333:user/alice is not authorized to perform: bedrock:InvokeModel on resource: "
        f"{MODEL_E1} because no identity-based policy allows the bedrock:InvokeModel action"
    )


def test_denied_message_for_explicit_deny_matches_aws_wording():
    message = denied_message("arn:aws:iam::111122223333:user/alice", "bedrock:DeleteInferenceProfile", PROFILE, DENY)
    assert message.endswith(f"on resource: {PROFILE} with an explicit deny in an identity-based policy")
