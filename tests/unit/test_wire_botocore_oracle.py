"""botocore as the oracle of outcrop's rest-json wire, without a server.

Requests: botocore's own serializer builds the HTTP request a client would send for each control-plane
operation; outcrop routes it (``service_catalog().match``) and parses it (``parse_request``); the
params must come back equal. Responses: outcrop's ``serialize_output`` / ``error_response`` bytes, read
by botocore's ``RestJSONParser``, must give back the result dict (or the error code and message).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import botocore.session
import pytest
from botocore.parsers import RestJSONParser
from botocore.serialize import create_serializer
from botocore.utils import percent_encode_sequence

from outcrop.app import service_catalog
from outcrop.errors import Conflict, NotFound, ServiceError, TooManyTags, ValidationError
from outcrop.wire.restjson import error_response, parse_request, serialize_output

MODEL = botocore.session.get_session().get_service_model("bedrock")
APP_ARN = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abcd1234efgh"
SYS_ID = "us.anthropic.claude-3-5-sonnet-20240620-v1:0"
SYS_ARN = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/{SYS_ID}"
FM_ARN = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"
T0 = dt.datetime(2025, 1, 16, 8, 58, 0, 978628, tzinfo=dt.UTC)
T1 = dt.datetime(2025, 1, 30, 23, 38, 35, 31004, tzinfo=dt.UTC)

REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("CreateInferenceProfile", {"inferenceProfileName": "my profile", "modelSource": {"copyFrom": FM_ARN}}),
    ("CreateInferenceProfile", {
        "inferenceProfileName": "tagged_one-2", "description": "Routes to: haiku.v1",
        "clientRequestToken": "3568048c-5e4f-4c3e-9f0a-1b2c3d4e5f60",
        "modelSource": {"copyFrom": SYS_ARN},
        "tags": [{"key": "team", "value": "a b"}, {"key": "cost/center", "value": ""}],
    }),
    ("GetInferenceProfile", {"inferenceProfileIdentifier": APP_ARN}),
    ("GetInferenceProfile", {"inferenceProfileIdentifier": SYS_ID, "projectIdentifier": "default"}),
    ("GetInferenceProfile", {"inferenceProfileIdentifier": "abcd1234efgh"}),
    ("ListInferenceProfiles", {}),
    ("ListInferenceProfiles", {"maxResults": 5, "typeEquals": "APPLICATION", "nextToken": "eyJhIjoxfQ.a-b_c"}),
    ("ListInferenceProfiles", {"typeEquals": "SYSTEM_DEFINED", "projectIdentifier": "default"}),
    ("DeleteInferenceProfile", {"inferenceProfileIdentifier": APP_ARN}),
    ("DeleteInferenceProfile", {"inferenceProfileIdentifier": "abcd1234efgh"}),
    ("TagResource", {"resourceARN": APP_ARN, "tags": [{"key": "k", "value": "v=1+2@x"}]}),
    ("TagResource", {"resourceARN": APP_ARN, "tags": []}),
    ("UntagResource", {"resourceARN": APP_ARN, "tagKeys": ["k", "a:b/c"]}),
    ("ListTagsForResource", {"resourceARN": APP_ARN}),
    ("ListFoundationModels", {}),
    ("ListFoundationModels", {"byProvider": "Anthropic", "byOutputModality": "TEXT", "byInferenceType": "ON_DEMAND",
                              "byCustomizationType": "FINE_TUNING"}),
    ("GetFoundationModel", {"modelIdentifier": "anthropic.claude-3-haiku-20240307-v1:0"}),
    ("GetFoundationModel", {"modelIdentifier": FM_ARN}),
]


def _summary(**over: Any) -> dict[str, Any]:
    base = {
        "inferenceProfileName": "US Anthropic Claude 3.5 Sonnet",
        "description": "Routes requests to Anthropic Claude 3.5 Sonnet in us-west-2 and us-east-1.",
        "createdAt": T0,
        "updatedAt": T1,
        "inferenceProfileArn": SYS_ARN,
        "models": [{"modelArn": FM_ARN}, {"modelArn": "arn:aws:bedrock:::foundation-model/x.y-v1:0"}],
        "inferenceProfileId": SYS_ID,
        "status": "ACTIVE",
        "type": "SYSTEM_DEFINED",
    }
    base.update(over)
    return base


MODEL_DETAILS = {
    "modelArn": FM_ARN,
    "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
    "modelName": "Claude 3 Haiku",
    "providerName": "Anthropic",
    "inputModalities": ["TEXT", "IMAGE"],
    "outputModalities": ["TEXT"],
    "responseStreamingSupported": True,
    "customizationsSupported": [],
    "inferenceTypesSupported": ["ON_DEMAND", "INFERENCE_PROFILE"],
    "modelLifecycle": {"status": "ACTIVE"},
}

RESULTS: list[tuple[str, dict[str, Any]]] = [
    ("CreateInferenceProfile", {"inferenceProfileArn": APP_ARN, "status": "ACTIVE"}),
    ("GetInferenceProfile", _summary()),
    ("GetInferenceProfile", {k: v for k, v in _summary(type="APPLICATION").items() if k != "description"}),
    ("ListInferenceProfiles", {"inferenceProfileSummaries": [_summary(), _summary(createdAt=T1)], "nextToken": "abc.def"}),
    ("ListInferenceProfiles", {"inferenceProfileSummaries": []}),
    ("DeleteInferenceProfile", {}),
    ("TagResource", {}),
    ("UntagResource", {}),
    ("ListTagsForResource", {"tags": [{"key": "team", "value": "a"}, {"key": "empty", "value": ""}]}),
    ("ListFoundationModels", {"modelSummaries": [MODEL_DETAILS]}),
    ("GetFoundationModel", {"modelDetails": MODEL_DETAILS}),
]


def _wire_request(op_name: str, params: dict[str, Any]) -> dict[str, Any]:
    request = create_serializer("rest-json").serialize_to_request(params, MODEL.operation_model(op_name))
    body = request["body"]
    return {
        "method": request["method"],
        "path": request["url_path"],
        "query": percent_encode_sequence(request["query_string"]).encode("ascii"),
        "headers": {k.lower(): v for k, v in request["headers"].items()},
        "body": body.encode("utf-8") if isinstance(body, str) else body,
    }


@pytest.mark.parametrize(("op_name", "params"), REQUESTS, ids=[f"{o}-{i}" for i, (o, _) in enumerate(REQUESTS)])
def test_outcrop_parses_what_botocore_serializes(op_name: str, params: dict[str, Any]) -> None:
    wire = _wire_request(op_name, params)
    match = service_catalog().match(wire["method"], wire["path"])
    assert match is not None, wire
    op, labels = match
    assert (op.service, op.name) == ("bedrock", op_name)
    parsed = parse_request(op, labels, wire["query"], wire["headers"], wire["body"])
    assert parsed == params


def test_arn_label_is_one_percent_encoded_segment() -> None:
    wire = _wire_request("GetInferenceProfile", {"inferenceProfileIdentifier": APP_ARN})
    assert wire["path"] == "/inference-profiles/" + APP_ARN.replace(":", "%3A").replace("/", "%2F")
    _op, labels = service_catalog().match("GET", wire["path"])  # type: ignore[misc]
    assert labels == [APP_ARN.replace(":", "%3A").replace("/", "%2F")]


def test_every_served_control_operation_has_a_request_case() -> None:
    assert {o for o, _ in REQUESTS} == {o for o, _ in RESULTS}
    assert len({o for o, _ in REQUESTS}) == 9


def _botocore_reads(op_name: str, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> dict[str, Any]:
    response = {
        "status_code": status,
        "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in headers},
        "body": body,
    }
    return RestJSONParser().parse(response, MODEL.operation_model(op_name).output_shape)


@pytest.mark.parametrize(("op_name", "result"), RESULTS, ids=[f"{o}-{i}" for i, (o, _) in enumerate(RESULTS)])
def test_botocore_reads_what_outcrop_serializes(op_name: str, result: dict[str, Any]) -> None:
    op = service_catalog().operations[("bedrock", op_name)]
    status, headers, body = serialize_output(op, result)
    assert status == MODEL.operation_model(op_name).http.get("responseCode", 200)
    parsed = _botocore_reads(op_name, status, headers, body)
    parsed.pop("ResponseMetadata", None)
    assert parsed == result


def test_timestamps_keep_microseconds_in_iso8601() -> None:
    op = service_catalog().operations[("bedrock", "GetInferenceProfile")]
    _, _, body = serialize_output(op, _summary())
    assert b'"createdAt":"2025-01-16T08:58:00.978628Z"' in body


@pytest.mark.parametrize(
    ("op_name", "error", "status"),
    [
        ("CreateInferenceProfile", Conflict("An inference profile named x already exists."), 400),
        ("CreateInferenceProfile", ValidationError("1 validation error detected: Value 'a.b' at 'x'"), 400),
        ("GetInferenceProfile", NotFound("Inference profile abc not found."), 404),
        ("TagResource", TooManyTags("too many", resourceName=APP_ARN), 400),
        ("CreateInferenceProfile", ServiceError("boom"), 500),
    ],
)
def test_botocore_reads_outcrop_errors(op_name: str, error: ServiceError, status: int) -> None:
    op = service_catalog().operations[("bedrock", op_name)]
    got_status, headers, body = error_response(op, error)
    assert got_status == status
    parsed = _botocore_reads(op_name, got_status, headers, body)
    assert parsed["Error"]["Code"] == error.code
    assert parsed["Error"]["Message"] == error.message
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == status


def test_a_remembered_route_answers_as_the_first_time_and_long_labels_decode_too() -> None:
    catalog = service_catalog()
    path = "/model/" + APP_ARN.replace(":", "%3A").replace("/", "%2F") + "/converse"
    first = catalog.match("POST", path)
    assert first is not None
    first[1].append("changed by a caller")  # each caller gets its own list of labels
    again = catalog.match("POST", path)
    assert again is not None and again[0] is first[0] and again[1] == [path.split("/")[2]]
    assert catalog.match("GET", path) is None  # the method is part of what is remembered
    op = again[0]
    long_id = "x" * 500 + "%3A0"  # longer than what is remembered: decoded all the same
    body = b'{"messages": [{"role": "user", "content": [{"text": "hi"}]}]}'
    assert parse_request(op, [long_id], b"", {}, body)["modelId"] == "x" * 500 + ":0"
    assert parse_request(op, [again[1][0]], b"", {}, body)["modelId"] == APP_ARN
