"""ARN condition operators as IAM evaluates them, component by component (each case failed before its fix)."""

from __future__ import annotations

import pytest

from outcrop.auth.policy import Decision, evaluate, parse_policy

PROFILE = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/abcd1234efgh"
MODEL = "arn:aws:bedrock:us-west-2::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"


def _deny_if(operator: str, pattern: str) -> Decision:
    policy = parse_policy({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "bedrock:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "bedrock:*", "Resource": "*",
         "Condition": {operator: {"bedrock:InferenceProfileArn": pattern}}},
    ]})
    return evaluate([policy], "bedrock:InvokeModel", MODEL, {"bedrock:inferenceprofilearn": [PROFILE]})


# IAM: "ArnEquals, ArnLike: Case-sensitive matching of the ARN. Each of the six colon-delimited components of
# the ARN is checked separately and each can include multi-character match wildcards (*) or single-character
# match wildcards (?)" (IAM User Guide, condition operators): ArnEquals takes wildcards as ArnLike does.
@pytest.mark.parametrize("operator", ["ArnEquals", "ArnLike"])
@pytest.mark.parametrize("pattern", [
    "arn:aws:bedrock:*:111122223333:application-inference-profile/*",
    "arn:aws:bedrock:us-east-1:*:application-inference-profile/abcd1234efg?",
])
def test_arn_operators_take_wildcards(operator: str, pattern: str) -> None:
    assert _deny_if(operator, pattern) is Decision.EXPLICIT_DENY


@pytest.mark.parametrize("operator", ["ArnNotEquals", "ArnNotLike"])
def test_negated_arn_operators_take_wildcards(operator: str) -> None:
    assert _deny_if(operator, "arn:aws:bedrock:*:111122223333:application-inference-profile/*") is Decision.ALLOW


@pytest.mark.parametrize("operator", ["ArnEquals", "ArnLike"])
def test_arn_wildcards_do_not_span_components(operator: str) -> None:
    # The account component is "*" in the pattern but the Region component must still be us-west-2.
    assert _deny_if(operator, "arn:aws:bedrock:us-west-2:*:application-inference-profile/*") is Decision.ALLOW
    # "*" in one component cannot swallow the colons of the others.
    assert _deny_if(operator, "arn:aws:bedrock:*:application-inference-profile/*") is Decision.ALLOW


def test_a_lone_wildcard_matches_any_arn() -> None:
    assert _deny_if("ArnLike", "*") is Decision.EXPLICIT_DENY
