"""bedrock-runtime over the wire with boto3: every operation by every identifier form, on the builtin model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.conftest import ServerProcess
from tests.integration.runtime_helpers import (
    ACCOUNT,
    HAIKU,
    HAIKU_PROFILE_ARN,
    US_HAIKU,
    USER_HELLO,
    anthropic_body,
    server_for_module,
)

INVALID = "The provided model identifier is invalid."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from server_for_module(tmp_path_factory.mktemp("runtime"))


@pytest.fixture(scope="module")
def runtime(server: ServerProcess) -> Any:
    return server.client("bedrock-runtime")


@pytest.fixture(scope="module")
def app_profile(server: ServerProcess) -> dict[str, Any]:
    bedrock = server.client("bedrock")
    arn = bedrock.create_inference_profile(
        inferenceProfileName="runtime-app", modelSource={"copyFrom": HAIKU_PROFILE_ARN}
    )["inferenceProfileArn"]
    return bedrock.get_inference_profile(inferenceProfileIdentifier=arn)


IDENTIFIER_FORMS = ["foundation-id", "foundation-arn", "system-id", "system-arn", "app-arn", "app-id"]


def identifier(form: str, app_profile: dict[str, Any]) -> str:
    return {
        "foundation-id": HAIKU,
        "foundation-arn": f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}",
        "system-id": US_HAIKU,
        "system-arn": HAIKU_PROFILE_ARN,
        "app-arn": app_profile["inferenceProfileArn"],
        "app-id": app_profile["inferenceProfileId"],
    }[form]


def _stream_text(events: Any) -> tuple[str, list[str]]:
    text, kinds = "", []
    for event in events:
        kind = next(iter(event))
        kinds.append(kind)
        if kind == "contentBlockDelta":
            text += event[kind]["delta"].get("text", "")
    return text, kinds


@pytest.mark.parametrize("form", IDENTIFIER_FORMS)
def test_every_operation_accepts_every_identifier_form(runtime, app_profile, form):
    model_id = identifier(form, app_profile)
    converse = runtime.converse(modelId=model_id, messages=USER_HELLO, inferenceConfig={"maxTokens": 64})
    assert converse["ResponseMetadata"]["HTTPStatusCode"] == 200
    text = converse["output"]["message"]["content"][0]["text"]
    assert converse["stopReason"] == "end_turn"
    assert converse["usage"] == {"inputTokens": 2, "outputTokens": converse["usage"]["outputTokens"],
                                 "totalTokens": 2 + converse["usage"]["outputTokens"]}
    assert "latencyMs" in converse["metrics"]

    streamed, kinds = _stream_text(runtime.converse_stream(
        modelId=model_id, messages=USER_HELLO, inferenceConfig={"maxTokens": 64})["stream"])
    assert streamed == text  # same input → same output, streamed or not
    assert kinds[0] == "messageStart" and kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"]

    invoked = runtime.invoke_model(modelId=model_id, body=anthropic_body())
    body = json.loads(invoked["body"].read())
    assert body["type"] == "message" and body["content"][0]["type"] == "text"
    assert body["usage"]["input_tokens"] == 2

    chunks = [json.loads(e["chunk"]["bytes"]) for e in runtime.invoke_model_with_response_stream(
        modelId=model_id, body=anthropic_body())["body"]]
    assert chunks[0]["type"] == "message_start" and chunks[-1]["type"] == "message_stop"
    assert chunks[-1]["amazon-bedrock-invocationMetrics"]["inputTokenCount"] == 2

    counted = runtime.count_tokens(modelId=model_id, input={"converse": {"messages": USER_HELLO}})
    assert counted["inputTokens"] == 2


def test_identifier_with_a_literal_slash_in_the_path_is_accepted(server, app_profile):
    arn = app_profile["inferenceProfileArn"]  # …:application-inference-profile/<id>, sent unencoded
    path = "/model/" + arn.replace(":", "%3A") + "/converse"
    r = httpx.post(server.url + path, json={"messages": USER_HELLO}, headers={
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/us-east-1/bedrock/aws4_request, "
                         "SignedHeaders=host, Signature=0"})
    assert r.status_code == 200, r.text
    assert r.json()["stopReason"] == "end_turn"


@pytest.mark.parametrize("model_id", [
    "anthropic.claude-nonexistent-v1:0",
    "us.anthropic.claude-nonexistent-v1:0",
    "abcdefghijkl",  # an application profile ID that does not exist
    f"arn:aws:bedrock:us-east-1:{ACCOUNT}:application-inference-profile/abcdefghijkl",
    f"arn:aws:bedrock:us-east-1:999999999999:inference-profile/{US_HAIKU}",  # another account
    f"arn:aws:bedrock:us-west-2:{ACCOUNT}:inference-profile/{US_HAIKU}",  # another Region
    f"arn:aws:bedrock:us-west-2::foundation-model/{HAIKU}",
])
def test_unknown_or_foreign_identifier_is_invalid(runtime, model_id):
    with pytest.raises(ClientError) as e:
        runtime.converse(modelId=model_id, messages=USER_HELLO)
    assert e.value.response["Error"] == {"Code": "ValidationException", "Message": INVALID}
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_deleted_application_profile_is_invalid(server, runtime):
    bedrock = server.client("bedrock")
    arn = bedrock.create_inference_profile(
        inferenceProfileName="to-delete", modelSource={"copyFrom": HAIKU_PROFILE_ARN})["inferenceProfileArn"]
    runtime.converse(modelId=arn, messages=USER_HELLO)
    bedrock.delete_inference_profile(inferenceProfileIdentifier=arn)
    with pytest.raises(ClientError) as e:
        runtime.invoke_model(modelId=arn, body=anthropic_body())
    assert e.value.response["Error"]["Message"] == INVALID


def test_profile_only_model_called_directly_gets_the_on_demand_error(runtime):
    model = "anthropic.claude-sonnet-4-20250514-v1:0"
    with pytest.raises(ClientError) as e:
        runtime.converse(modelId=model, messages=USER_HELLO)
    assert e.value.response["Error"]["Message"] == (
        f"Invocation of model ID {model} with on-demand throughput isn\u2019t supported. Retry your request "
        "with the ID or ARN of an inference profile that contains this model.")
    # …and through its profile it works.
    assert runtime.converse(modelId="us." + model, messages=USER_HELLO)["stopReason"] == "end_turn"


def test_invoke_model_sends_bedrocks_headers(runtime):
    r = runtime.invoke_model(modelId=US_HAIKU, body=anthropic_body())
    headers = r["ResponseMetadata"]["HTTPHeaders"]
    body = json.loads(r["body"].read())
    assert r["contentType"] == "application/json"
    assert headers["x-amzn-bedrock-input-token-count"] == str(body["usage"]["input_tokens"])
    assert headers["x-amzn-bedrock-output-token-count"] == str(body["usage"]["output_tokens"])
    assert int(headers["x-amzn-bedrock-invocation-latency"]) >= 0
    assert headers["x-amzn-requestid"] == r["ResponseMetadata"]["RequestId"]


def test_latency_and_service_tier_are_served_as_standard_and_default_and_said_so(runtime):
    """outcrop has one way to serve: a request for latency-optimized inference or another service tier is
    served at standard latency in the default tier, and the answer says so (where the request asked)."""
    asked = {"performanceConfig": {"latency": "optimized"}, "serviceTier": {"type": "priority"}}
    served = {"performanceConfig": {"latency": "standard"}, "serviceTier": {"type": "default"}}
    r = runtime.converse(modelId=US_HAIKU, messages=USER_HELLO, **asked)
    assert {k: r[k] for k in served} == served
    plain = runtime.converse(modelId=US_HAIKU, messages=USER_HELLO)
    assert "performanceConfig" not in plain and "serviceTier" not in plain
    events = list(runtime.converse_stream(modelId=US_HAIKU, messages=USER_HELLO, **asked)["stream"])
    metadata = events[-1]["metadata"]
    assert {k: metadata[k] for k in served} == served and metadata["usage"]["outputTokens"] > 0
    for call in (runtime.invoke_model, runtime.invoke_model_with_response_stream):
        r = call(modelId=US_HAIKU, body=anthropic_body(), performanceConfigLatency="optimized", serviceTier="flex")
        assert (r["performanceConfigLatency"], r["serviceTier"]) == ("standard", "default")
        assert "performanceConfigLatency" not in call(modelId=US_HAIKU, body=anthropic_body())
    with pytest.raises(ClientError) as e:
        runtime.converse(modelId=US_HAIKU, messages=USER_HELLO, serviceTier={"type": "gold"})
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert "serviceTier.type" in e.value.response["Error"]["Message"]


def test_additional_model_response_field_paths_point_into_the_models_own_response(runtime):
    full = runtime.converse(modelId=HAIKU, messages=USER_HELLO)["output"]["message"]["content"][0]["text"]
    word = full.split()[2]
    ask = {"inferenceConfig": {"stopSequences": [word]},
           "additionalModelResponseFieldPaths": ["/stop_sequence", "/usage/output_tokens", "/not_there"]}
    r = runtime.converse(modelId=US_HAIKU, messages=USER_HELLO, **ask)
    assert r["stopReason"] == "stop_sequence"
    assert r["additionalModelResponseFields"] == {
        "stop_sequence": word, "usage": {"output_tokens": r["usage"]["outputTokens"]}}
    events = list(runtime.converse_stream(modelId=US_HAIKU, messages=USER_HELLO, **ask)["stream"])
    stop, metadata = events[-2]["messageStop"], events[-1]["metadata"]
    assert stop == {"stopReason": "stop_sequence", "additionalModelResponseFields": {
        "stop_sequence": word, "usage": {"output_tokens": metadata["usage"]["outputTokens"]}}}
    assert "additionalModelResponseFields" not in runtime.converse(modelId=HAIKU, messages=USER_HELLO)
    with pytest.raises(ClientError) as e:
        runtime.converse(modelId=HAIKU, messages=USER_HELLO, additionalModelResponseFieldPaths=["stop_sequence"])
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert "is not valid" in e.value.response["Error"]["Message"]


def test_structured_output_from_the_builtin_model_follows_the_schema(runtime):
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "when": {"type": "string", "format": "date"},
            "stops": {"type": "array", "items": {"$ref": "#/$defs/stop"}, "minItems": 2},
        },
        "required": ["city", "days", "when", "stops"],
        "$defs": {"stop": {"type": "object", "properties": {"name": {"type": "string"},
                                                            "night": {"anyOf": [{"type": "boolean"}, {"type": "null"}]}},
                           "required": ["name", "night"]}},
    }
    ask = {"outputConfig": {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {
        "schema": json.dumps(schema), "name": "trip"}}}}}
    r = runtime.converse(modelId=US_HAIKU, messages=USER_HELLO, **ask)
    value = json.loads(r["output"]["message"]["content"][0]["text"])
    assert set(value) == {"city", "days", "when", "stops"} and 1 <= value["days"] <= 7
    assert len(value["stops"]) == 2 and all(isinstance(s["night"], bool) for s in value["stops"])
    assert r["stopReason"] == "end_turn"
    # The same request, the same document; streamed, the same text in deltas.
    assert runtime.converse(modelId=US_HAIKU, messages=USER_HELLO, **ask)["output"] == r["output"]
    text, _ = _stream_text(runtime.converse_stream(modelId=US_HAIKU, messages=USER_HELLO, **ask)["stream"])
    assert text == r["output"]["message"]["content"][0]["text"]
    for bad, says in (("{not json", "is not valid JSON"), ("[1]", "must be a JSON Schema object")):
        with pytest.raises(ClientError) as e:
            runtime.converse(modelId=US_HAIKU, messages=USER_HELLO, outputConfig={"textFormat": {
                "type": "json_schema", "structure": {"jsonSchema": {"schema": bad}}}})
        assert e.value.response["Error"]["Code"] == "ValidationException" and says in e.value.response["Error"]["Message"]


@pytest.mark.parametrize(("schema", "answered"), [
    ({"$ref": "#"}, False),  # refers to itself with no end
    ({"$defs": {"n": {"type": "object", "properties": {"x": {"$ref": "#/$defs/n"}}, "required": ["x"]}},
      "$ref": "#/$defs/n"}, False),
    ({"type": "object", "properties": {"x": {"type": 5}, "y": {"enum": {"a": 1}}, "z": {"minItems": "x"},
                                       "w": {"format": [1], "minimum": "a", "type": "integer"},
                                       "v": {"anyOf": {"a": 1}}, "u": {"allOf": 3, "required": 7}}}, True),
], ids=["self", "cycle", "odd-keywords"])
def test_schemas_the_builtin_cannot_fill_are_a_400_never_a_500(runtime, schema, answered):
    asks = [
        {"outputConfig": {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"schema": json.dumps(schema)}}}}},
        {"toolConfig": {"tools": [{"toolSpec": {"name": "t", "inputSchema": {"json": schema}}}], "toolChoice": {"any": {}}}},
    ]
    for ask in asks:
        try:
            runtime.converse(modelId=HAIKU, messages=USER_HELLO, **ask)
            assert answered
        except ClientError as e:
            assert not answered
            assert e.response["Error"]["Code"] == "ValidationException"
            assert "refers to itself" in e.response["Error"]["Message"]


def test_extended_thinking_from_the_builtin_model(runtime):
    """Claude's ``thinking``: a reasoning block with a signature before the answer, counted as output, in
    Converse, ConverseStream and Claude's own InvokeModel body and stream; sent back, it is accepted."""
    thinking = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    r = runtime.converse(modelId=US_HAIKU, messages=USER_HELLO, additionalModelRequestFields=thinking)
    reasoning, answer = r["output"]["message"]["content"]
    text = reasoning["reasoningContent"]["reasoningText"]
    assert text["text"] and text["signature"] and answer["text"]
    plain = runtime.converse(modelId=US_HAIKU, messages=USER_HELLO)
    assert len(plain["output"]["message"]["content"]) == 1
    assert r["usage"]["outputTokens"] > plain["usage"]["outputTokens"]

    events = list(runtime.converse_stream(modelId=US_HAIKU, messages=USER_HELLO,
                                          additionalModelRequestFields=thinking)["stream"])
    pieces = [e["contentBlockDelta"] for e in events if "contentBlockDelta" in e]
    assert "".join(p["delta"]["reasoningContent"].get("text", "") for p in pieces if p["contentBlockIndex"] == 0) \
        == text["text"]
    assert [p["delta"]["reasoningContent"]["signature"] for p in pieces if p["contentBlockIndex"] == 0
            and "signature" in p["delta"]["reasoningContent"]] == [text["signature"]]
    assert "".join(p["delta"]["text"] for p in pieces if p["contentBlockIndex"] == 1) == answer["text"]

    turn = [*USER_HELLO, r["output"]["message"], {"role": "user", "content": [{"text": "And then?"}]}]
    assert runtime.converse(modelId=US_HAIKU, messages=turn, additionalModelRequestFields=thinking)["stopReason"] \
        == "end_turn"

    body = json.loads(anthropic_body())
    body["thinking"] = thinking["thinking"]
    body["max_tokens"] = 2048  # above the budget, as Claude requires
    native = json.loads(runtime.invoke_model(modelId=US_HAIKU, body=json.dumps(body))["body"].read())
    assert native["content"][0] == {"type": "thinking", "thinking": text["text"], "signature": text["signature"]}
    chunks = [json.loads(e["chunk"]["bytes"]) for e in
              runtime.invoke_model_with_response_stream(modelId=US_HAIKU, body=json.dumps(body))["body"]]
    assert chunks[1] == {"type": "content_block_start", "index": 0,
                         "content_block": {"type": "thinking", "thinking": "", "signature": ""}}
    assert "".join(c["delta"]["thinking"] for c in chunks if c.get("delta", {}).get("type") == "thinking_delta") \
        == text["text"]
    assert [c["delta"]["signature"] for c in chunks if c.get("delta", {}).get("type") == "signature_delta"] \
        == [text["signature"]]


NOVA_2 = "us.amazon.nova-2-lite-v1:0"


def test_nova_2_reasoning_is_redacted_and_counted_as_output(runtime):
    """Nova 2's ``reasoningConfig``: a reasoningContent block reading [REDACTED] before the answer, its tokens
    counted as output and growing with the effort, in Converse, ConverseStream and Nova's own InvokeModel
    body and stream; sent back with the next turn, it is accepted; a wrong effort says what to send."""
    def config(effort: str) -> dict[str, Any]:
        return {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": effort}}

    plain = runtime.converse(modelId=NOVA_2, messages=USER_HELLO)
    assert [list(b) for b in plain["output"]["message"]["content"]] == [["text"]]
    outputs = {}
    for effort in ("low", "medium", "high"):
        r = runtime.converse(modelId=NOVA_2, messages=USER_HELLO, additionalModelRequestFields=config(effort))
        reasoning, answer = r["output"]["message"]["content"]
        assert reasoning == {"reasoningContent": {"reasoningText": {"text": "[REDACTED]"}}}
        assert answer == plain["output"]["message"]["content"][0]  # the same answer, after the reasoning
        outputs[effort] = r["usage"]["outputTokens"]
    assert plain["usage"]["outputTokens"] < outputs["low"] < outputs["medium"] < outputs["high"]
    disabled = {"reasoningConfig": {"type": "disabled", "maxReasoningEffort": "high"}}
    assert runtime.converse(modelId=NOVA_2, messages=USER_HELLO, additionalModelRequestFields=disabled)["usage"] \
        == plain["usage"]

    events = list(runtime.converse_stream(modelId=NOVA_2, messages=USER_HELLO,
                                          additionalModelRequestFields=config("medium"))["stream"])
    deltas = [e["contentBlockDelta"] for e in events if "contentBlockDelta" in e]
    assert [d["delta"] for d in deltas if d["contentBlockIndex"] == 0] == [{"reasoningContent": {"text": "[REDACTED]"}}]
    assert "".join(d["delta"]["text"] for d in deltas if d["contentBlockIndex"] == 1) \
        == plain["output"]["message"]["content"][0]["text"]
    assert next(e["metadata"] for e in events if "metadata" in e)["usage"]["outputTokens"] == outputs["medium"]

    turn = [*USER_HELLO, {"role": "assistant", "content": [{"reasoningContent": {"reasoningText": {"text": "[REDACTED]"}}},
                                                           {"text": "Hi."}]},
            {"role": "user", "content": [{"text": "And then?"}]}]
    assert runtime.converse(modelId=NOVA_2, messages=turn, additionalModelRequestFields=config("low"))["stopReason"] \
        == "end_turn"

    body = {"schemaVersion": "messages-v1", "messages": USER_HELLO,
            "inferenceConfig": {"max_new_tokens": 200, **config("high")}}
    native = json.loads(runtime.invoke_model(modelId=NOVA_2, body=json.dumps(body))["body"].read())
    content = native["output"]["message"]["content"]
    assert content[0] == {"reasoningContent": {"reasoningText": {"text": "[REDACTED]"}}} and "text" in content[1]
    assert native["usage"]["outputTokens"] == outputs["high"]
    chunks = [json.loads(e["chunk"]["bytes"]) for e in
              runtime.invoke_model_with_response_stream(modelId=NOVA_2, body=json.dumps(body))["body"]]
    assert {"contentBlockDelta": {"delta": {"reasoningContent": {"text": "[REDACTED]"}}, "contentBlockIndex": 0}} \
        in chunks
    body["messages"] = turn
    assert json.loads(runtime.invoke_model(modelId=NOVA_2, body=json.dumps(body))["body"].read())["stopReason"] \
        == "end_turn"

    with pytest.raises(ClientError) as e:
        runtime.converse(modelId=NOVA_2, messages=USER_HELLO, additionalModelRequestFields=config("maximum"))
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert e.value.response["Error"]["Message"] == ("additionalModelRequestFields.reasoningConfig.maxReasoningEffort "
                                                    "must be one of low, medium, high, not 'maximum'.")
    body["inferenceConfig"]["reasoningConfig"] = {"type": "on"}
    with pytest.raises(ClientError) as e:
        runtime.invoke_model(modelId=NOVA_2, body=json.dumps(body))
    assert e.value.response["Error"]["Message"] == (
        "Malformed input request: #/inferenceConfig/reasoningConfig.type must be enabled or disabled, not 'on', "
        "please reformat your input and try again.")
    # Nova 1 and Claude's models do not take it: for them it is passed through untouched, unread.
    for other in ("us.amazon.nova-lite-v1:0", US_HAIKU):
        r = runtime.converse(modelId=other, messages=USER_HELLO, additionalModelRequestFields=config("high"))
        assert [list(b) for b in r["output"]["message"]["content"]] == [["text"]]
    body["messages"] = USER_HELLO
    body["inferenceConfig"]["reasoningConfig"] = config("high")["reasoningConfig"]
    nova_1 = json.loads(runtime.invoke_model(modelId="us.amazon.nova-lite-v1:0", body=json.dumps(body))["body"].read())
    assert [list(b) for b in nova_1["output"]["message"]["content"]] == [["text"]]


def test_prompt_caching_reads_what_an_earlier_call_wrote_and_meters_it(server, runtime):
    doc = " ".join(f"clause{i}" for i in range(2500))  # 2,500 tokens: over the 2,048 a Claude 3.5 Haiku checkpoint needs
    system = [{"text": doc}, {"cachePoint": {"type": "default"}}]
    model = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
    first = runtime.converse(modelId=model, system=system, messages=USER_HELLO)["usage"]
    assert first["cacheWriteInputTokens"] == 2500 and "cacheReadInputTokens" not in first
    assert first["totalTokens"] == first["inputTokens"] + first["outputTokens"] + 2500
    second = runtime.converse(modelId=model, system=system, messages=USER_HELLO)["usage"]
    assert second["cacheReadInputTokens"] == 2500 and "cacheWriteInputTokens" not in second
    # Claude's own body and cache_control: the same prefix, read.
    body = json.loads(anthropic_body())
    body["system"] = [{"type": "text", "text": doc, "cache_control": {"type": "ephemeral"}}]
    native = json.loads(runtime.invoke_model(modelId=model, body=json.dumps(body))["body"].read())["usage"]
    assert native["cache_read_input_tokens"] == 2500 and native["cache_creation_input_tokens"] == 0
    # A checkpoint under the model's minimum caches nothing, and is no error: 1,500 tokens are too few for
    # Claude 3.5 Haiku, and enough for Claude 3.7 Sonnet (1,024).
    middling = [{"text": " ".join(f"article{i}" for i in range(1500))}, {"cachePoint": {"type": "default"}}]
    short = runtime.converse(modelId=model, system=middling, messages=USER_HELLO)["usage"]
    assert "cacheWriteInputTokens" not in short and "cacheReadInputTokens" not in short
    sonnet = runtime.converse(modelId="us.anthropic.claude-3-7-sonnet-20250219-v1:0", system=middling,
                              messages=USER_HELLO)["usage"]
    assert sonnet["cacheWriteInputTokens"] == 1500
    totals = httpx.get(server.url + "/_outcrop/usage", params={"groupBy": "model"}, timeout=30).json()["rows"]
    row = next(r for r in totals if r["model"] == model.removeprefix("us."))
    assert (row["cacheWriteTokens"], row["cacheReadTokens"]) == (2500, 5000)


def test_claudes_own_stream_reports_the_prompt_caches_part(runtime):
    """Claude's stream through InvokeModelWithResponseStream tells the cache's part as its body does: in
    message_start's usage (cache_creation_input_tokens, cache_read_input_tokens) and in the last chunk's
    amazon-bedrock-invocationMetrics (cacheWriteInputTokenCount, cacheReadInputTokenCount; BerriAI/litellm#34373)."""
    body = json.loads(anthropic_body())
    body["system"] = [{"type": "text", "text": " ".join(f"ordinance{i}" for i in range(1200)),
                       "cache_control": {"type": "ephemeral"}}]

    def stream() -> list[dict[str, Any]]:
        events = runtime.invoke_model_with_response_stream(modelId="us.anthropic.claude-3-7-sonnet-20250219-v1:0",
                                                           body=json.dumps(body))["body"]
        return [json.loads(e["chunk"]["bytes"]) for e in events]

    for written, read in ((1200, 0), (0, 1200)):
        chunks = stream()
        usage = chunks[0]["message"]["usage"]
        assert (usage["cache_creation_input_tokens"], usage["cache_read_input_tokens"]) == (written, read)
        metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]
        assert (metrics["cacheWriteInputTokenCount"], metrics["cacheReadInputTokenCount"]) == (written, read)
        assert metrics["inputTokenCount"] == usage["input_tokens"]


def test_cache_writes_are_detailed_by_ttl_in_converse_and_its_stream(runtime):
    model = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"  # caches from 1,024 tokens
    system = [{"text": " ".join(f"rule{i}" for i in range(1200))}, {"cachePoint": {"type": "default", "ttl": "1h"}}]
    messages = [{"role": "user", "content": [{"text": " ".join(f"fact{i}" for i in range(300))},
                                             {"cachePoint": {"type": "default"}}, {"text": "Hello!"}]}]
    usage = runtime.converse(modelId=model, system=system, messages=messages)["usage"]
    assert usage["cacheDetails"] == [{"ttl": "1h", "inputTokens": 1200}, {"ttl": "5m", "inputTokens": 300}]
    assert usage["cacheWriteInputTokens"] == 1500
    again = runtime.converse(modelId=model, system=system, messages=messages)["usage"]
    assert "cacheDetails" not in again and again["cacheReadInputTokens"] == 1500  # nothing written
    fresh = [{"role": "user", "content": [{"text": " ".join(f"other{i}" for i in range(300))},
                                          {"cachePoint": {"type": "default"}}, {"text": "Hello!"}]}]
    stream = runtime.converse_stream(modelId=model, system=system, messages=fresh)["stream"]
    metadata = next(e["metadata"] for e in stream if "metadata" in e)
    assert metadata["usage"]["cacheDetails"] == [{"ttl": "5m", "inputTokens": 300}]
    assert metadata["usage"]["cacheReadInputTokens"] == 1200


def test_nova_s_own_body_takes_cache_points_and_answers_its_cache_counts(runtime):
    doc = " ".join(f"entry{i}" for i in range(1100))  # over the 1,024 a Nova checkpoint needs
    body = {"schemaVersion": "messages-v1", "system": [{"text": doc}, {"cachePoint": {"type": "default"}}],
            "messages": [{"role": "user", "content": [{"text": "Hello!"}, {"cachePoint": {"type": "default"}}]}],
            "inferenceConfig": {"max_new_tokens": 20}}
    first = json.loads(runtime.invoke_model(modelId="amazon.nova-micro-v1:0", body=json.dumps(body))["body"].read())
    assert first["usage"]["cacheWriteInputTokenCount"] >= 1100 and first["usage"]["cacheReadInputTokenCount"] == 0
    second = json.loads(runtime.invoke_model(modelId="amazon.nova-micro-v1:0", body=json.dumps(body))["body"].read())
    assert second["usage"]["cacheReadInputTokenCount"] == first["usage"]["cacheWriteInputTokenCount"]
    assert second["output"]["message"]["content"] == first["output"]["message"]["content"]


def test_invoke_model_accepts_octet_stream_and_missing_content_type(server, runtime):
    r = runtime.invoke_model(modelId=HAIKU, body=anthropic_body(), contentType="application/octet-stream")
    assert json.loads(r["body"].read())["type"] == "message"
    raw = httpx.post(server.url + f"/model/{HAIKU}/invoke", content=anthropic_body())
    assert raw.status_code == 200 and raw.json()["type"] == "message"


def test_malformed_family_body_is_a_validation_error(runtime):
    with pytest.raises(ClientError) as e:
        runtime.invoke_model(modelId=HAIKU, body=json.dumps({"anthropic_version": "bedrock-2023-05-31",
                                                             "messages": []}))
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert e.value.response["Error"]["Message"].startswith("Malformed input request: ")


def test_converse_accepts_what_langchain_sends(runtime):
    r = runtime.converse(modelId=US_HAIKU, messages=USER_HELLO, system=[], inferenceConfig={})
    assert r["stopReason"] == "end_turn"


def test_converse_on_an_embedding_model_is_refused(runtime):
    with pytest.raises(ClientError) as e:
        runtime.converse(modelId="amazon.titan-embed-text-v2:0", messages=USER_HELLO)
    assert e.value.response["Error"]["Code"] == "ValidationException"


def test_converse_stop_sequence_and_max_tokens(runtime):
    full = runtime.converse(modelId=HAIKU, messages=USER_HELLO)["output"]["message"]["content"][0]["text"]
    word = full.split()[3]
    stopped = runtime.converse(modelId=HAIKU, messages=USER_HELLO, inferenceConfig={"stopSequences": [word]})
    assert stopped["stopReason"] == "stop_sequence"
    assert stopped["output"]["message"]["content"][0]["text"] == full[: full.index(word)].rstrip()
    short = runtime.converse(modelId=HAIKU, messages=USER_HELLO, inferenceConfig={"maxTokens": 2})
    assert short["stopReason"] == "max_tokens" and short["usage"]["outputTokens"] == 2


def test_an_empty_text_block_is_refused_where_it_is_and_claude_refuses_whitespace(runtime):
    """Bedrock refuses an empty text block, naming it (a turn replayed with the empty leading text block
    some streams produce is the usual cause); one of only whitespace passes Bedrock's check, and Claude
    refuses it. Converse, ConverseStream and CountTokens alike, so the bug shows here before it does on AWS."""
    turns = [{"role": "user", "content": [{"text": "weather?"}]},
             {"role": "assistant", "content": [{"text": "Let me see."}]},
             {"role": "user", "content": [{"cachePoint": {"type": "default"}}, {"text": "{}"}]}]

    def calls(model_id: str) -> list[Any]:
        return [lambda m: runtime.converse(modelId=model_id, messages=m),
                lambda m: runtime.converse_stream(modelId=model_id, messages=m),
                lambda m: runtime.count_tokens(modelId=model_id.removeprefix("us."), input={"converse": {"messages": m}})]

    def refused(call: Any, messages: list[dict[str, Any]]) -> str:
        with pytest.raises(ClientError) as e:
            call(messages)
        assert e.value.response["Error"]["Code"] == "ValidationException"
        return str(e.value.response["Error"]["Message"])

    empty = [*turns[:2], {"role": "user", "content": [{"cachePoint": {"type": "default"}}, {"text": ""}]}]
    blank = [*turns[:2], {"role": "user", "content": [{"cachePoint": {"type": "default"}}, {"text": " \n"}]}]
    for call in calls(US_HAIKU):
        assert refused(call, empty) == ("The text field in the ContentBlock object at messages.2.content.1 is blank. "
                                        "Add text to the text field, and try again.")
        assert refused(call, blank) == ("The model returned the following errors: messages: text content blocks "
                                        "must contain non-whitespace text")
        call(turns)
    for call in calls("us.amazon.nova-lite-v1:0"):
        assert refused(call, empty).startswith("The text field in the ContentBlock object at messages.2.content.1")
        call(blank)  # Nova takes it


WEATHER_TOOLS = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]}


@pytest.mark.parametrize(("model_id", "kwargs", "stream", "message"), [
    ("amazon.titan-text-express-v1", {"system": [{"text": "Be brief."}]}, False,
     "This model doesn't support system messages. Try again without a system message or use a model that "
     "supports system messages."),
    ("mistral.mistral-7b-instruct-v0:2", {"system": [{"text": "Be brief."}]}, True,
     "This model doesn't support system messages. Try again without a system message or use a model that "
     "supports system messages."),
    ("meta.llama3-8b-instruct-v1:0", {"toolConfig": WEATHER_TOOLS}, False, "This model doesn't support tool use."),
    ("us.deepseek.r1-v1:0", {"toolConfig": WEATHER_TOOLS}, False, "This model doesn't support tool use."),
    ("us.meta.llama3-1-8b-instruct-v1:0", {"toolConfig": WEATHER_TOOLS}, True,
     "This model doesn't support tool use in streaming mode."),
    ("mistral.mistral-large-2402-v1:0", {"toolConfig": WEATHER_TOOLS}, True,
     "This model doesn't support tool use in streaming mode."),
    ("mistral.mistral-large-2402-v1:0", {"toolConfig": {**WEATHER_TOOLS, "toolChoice": {"tool": {"name": "get_weather"}}}},
     False, "This model doesn't support the toolConfig.toolChoice.tool field. Remove toolConfig.toolChoice.tool and try again."),
    ("cohere.command-r-v1:0", {"toolConfig": {**WEATHER_TOOLS, "toolChoice": {"any": {}}}}, False,
     "This model doesn't support the toolConfig.toolChoice.any field. Remove toolConfig.toolChoice.any and try again."),
    ("us.anthropic.claude-3-5-haiku-20241022-v1:0", {"messages": [{"role": "user", "content": [
        {"text": "What is this?"}, {"image": {"format": "png", "source": {"bytes": b"\x89PNG"}}}]}]}, True,
     "This model doesn't support the image content block that you provided. Update the content block and try again."),
])
def test_converse_refuses_a_feature_the_model_lacks_as_bedrock_does(runtime, model_id, kwargs, stream, message):
    """Converse's features by model, from Bedrock's table: code that sends a system prompt to Titan Text or
    tools to Llama 3 fails here as it would on AWS. What the model has still works."""
    call = runtime.converse_stream if stream else runtime.converse
    kwargs = dict(kwargs)
    messages = kwargs.pop("messages", USER_HELLO)
    with pytest.raises(ClientError) as e:
        call(modelId=model_id, messages=messages, **kwargs)
    assert (e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]) == ("ValidationException", message)
    if stream and "toolConfig" in kwargs:  # tools without streaming are served
        assert runtime.converse(modelId=model_id, messages=USER_HELLO, **kwargs)["stopReason"] == "tool_use"
    for other in ("us.anthropic.claude-3-haiku-20240307-v1:0", "us.amazon.nova-lite-v1:0"):
        call(modelId=other, messages=messages, **kwargs)


def test_llama_and_mistral_take_tool_results_and_text_in_separate_turns(runtime):
    """Converse writes Meta's and Mistral's turns into a prompt template: a turn with tool results and text is
    refused by Bedrock ("Conversation blocks and tool result blocks cannot be provided in the same turn"),
    which agent frameworks hit when they add a note beside the results. Claude takes it."""
    use = {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {}}}
    result = {"toolResult": {"toolUseId": "t1", "content": [{"text": "sunny"}]}}
    mixed = [*USER_HELLO, {"role": "assistant", "content": [use]},
             {"role": "user", "content": [result, {"text": "Now answer."}]}]
    for model_id in ("us.meta.llama3-3-70b-instruct-v1:0", "mistral.mistral-large-2402-v1:0"):
        with pytest.raises(ClientError) as e:
            runtime.converse(modelId=model_id, messages=mixed, toolConfig=WEATHER_TOOLS)
        assert e.value.response["Error"]["Message"] == (
            "messages.2.content: Conversation blocks and tool result blocks cannot be provided in the same turn.")
        alone = [*mixed[:2], {"role": "user", "content": [result, {"cachePoint": {"type": "default"}}]}]
        assert runtime.converse(modelId=model_id, messages=alone, toolConfig=WEATHER_TOOLS)["stopReason"] == "end_turn"
    runtime.converse(modelId=US_HAIKU, messages=mixed, toolConfig=WEATHER_TOOLS)


def test_each_turn_answers_the_previous_turns_tool_calls_all_of_them_and_no_more(runtime):
    """The agent-loop bugs Bedrock reports most: a result missing for a call (a parallel call dropped, results
    split over turns) and a result with no call before it (history pruned between them), in its words."""
    def use(i: str) -> dict[str, Any]:
        return {"toolUse": {"toolUseId": i, "name": "get_weather", "input": {}}}

    def result(i: str) -> dict[str, Any]:
        return {"toolResult": {"toolUseId": i, "content": [{"text": "sunny"}]}}

    def refused(messages: list[dict[str, Any]]) -> str:
        for call in (runtime.converse, runtime.converse_stream):
            with pytest.raises(ClientError) as e:
                call(modelId=US_HAIKU, messages=messages, toolConfig=WEATHER_TOOLS)
            assert e.value.response["Error"]["Code"] == "ValidationException"
        return str(e.value.response["Error"]["Message"])

    calls = [*USER_HELLO, {"role": "assistant", "content": [use("a"), use("b")]}]
    assert refused([*calls, {"role": "user", "content": [result("a")]}]) == (
        "Expected toolResult blocks at messages.2.content for the following Ids: b")
    assert refused([*calls, {"role": "user", "content": [{"text": "and?"}]}]) == (
        "Expected toolResult blocks at messages.2.content for the following Ids: a, b")
    assert refused([*calls, {"role": "user", "content": [result("a"), result("b"), result("c")]}]) == (
        "The number of toolResult blocks at messages.2.content exceeds the number of toolUse blocks of previous turn.")
    assert refused([{"role": "user", "content": [result("a")]}]) == (
        "The number of toolResult blocks at messages.0.content exceeds the number of toolUse blocks of previous turn.")
    answered = [*calls, {"role": "user", "content": [result("b"), result("a")]}]
    assert runtime.converse(modelId=US_HAIKU, messages=answered, toolConfig=WEATHER_TOOLS)["stopReason"] == "end_turn"


def test_claude_takes_at_most_four_cache_checkpoints(runtime):
    """Agent loops that add a checkpoint per step pass four and fail on Claude, through Converse (Bedrock's
    wrapping of the model's error) and in Claude's own body alike."""
    point = {"cachePoint": {"type": "default"}}
    system = [{"text": "Be brief."}, point, {"text": "Really."}, point, {"text": "Truly."}, point]
    messages = [{"role": "user", "content": [{"text": "hi"}, point]}]
    assert runtime.converse(modelId=US_HAIKU, messages=messages, system=system[:4])["stopReason"] == "end_turn"
    with pytest.raises(ClientError) as e:
        runtime.converse(modelId=US_HAIKU, messages=[{"role": "user", "content": [{"text": "hi"}, point, {"text": "x"}, point]}],
                         system=system)
    assert e.value.response["Error"]["Message"] == (
        "The model returned the following errors: A maximum of 4 blocks with cache_control may be provided. Found 5.")
    runtime.converse(modelId="us.amazon.nova-lite-v1:0", messages=messages, system=system)  # not Claude's limit

    marked = {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}
    with pytest.raises(ClientError) as e:
        runtime.invoke_model(modelId=HAIKU, body=anthropic_body(messages=[{"role": "user", "content": [marked] * 5}]))
    assert e.value.response["Error"]["Message"] == "A maximum of 4 blocks with cache_control may be provided. Found 5."


def test_claude_thinking_keeps_claudes_rules(runtime):
    """Thinking with a budget under 1,024, max_tokens not above the budget, or a temperature other than 1 is
    refused in the words Bedrock passes on from Claude (Converse wraps them); thinking off, all are fine."""
    def refused(call: Any, **kwargs: Any) -> str:
        with pytest.raises(ClientError) as e:
            call(**kwargs)
        assert e.value.response["Error"]["Code"] == "ValidationException"
        return str(e.value.response["Error"]["Message"])

    wrap = "The model returned the following errors: "
    think = {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    for call in (runtime.converse, runtime.converse_stream):
        assert refused(call, modelId=US_HAIKU, messages=USER_HELLO, inferenceConfig={"maxTokens": 2048},
                       additionalModelRequestFields=think) == wrap + (
            "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at "
            "https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size")
        assert refused(call, modelId=US_HAIKU, messages=USER_HELLO, inferenceConfig={"temperature": 0.2},
                       additionalModelRequestFields=think) == wrap + (
            "temperature may only be set to 1 when thinking is enabled.")
        assert refused(call, modelId=US_HAIKU, messages=USER_HELLO,
                       additionalModelRequestFields={"thinking": {"type": "enabled", "budget_tokens": 512}}) == wrap + (
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    runtime.converse(modelId=US_HAIKU, messages=USER_HELLO, inferenceConfig={"maxTokens": 4096, "temperature": 1},
                     additionalModelRequestFields=think)
    runtime.converse(modelId=US_HAIKU, messages=USER_HELLO, inferenceConfig={"maxTokens": 10, "temperature": 0.2})

    body = json.loads(anthropic_body(temperature=0.5, thinking=think["thinking"]))
    body["max_tokens"] = 4096
    assert refused(runtime.invoke_model, modelId=HAIKU, body=json.dumps(body)) == (
        "`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at "
        "https://docs.claude.com/en/docs/build-with-claude/extended-thinking#important-considerations-when-using-"
        "extended-thinking")


def test_claudes_own_body_is_refused_where_claude_refuses_it(runtime):
    """Claude's conversation rules through InvokeModel, in the words Bedrock passes on: empty content or text,
    whitespace-only text, a tool call the next turn does not answer first, a result for a call never made, a
    tool_choice without tools; and Bedrock's own refusal of no messages at all (promptfoo/promptfoo#2573)."""
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}

    def result(i: str) -> dict[str, Any]:
        return {"type": "tool_result", "tool_use_id": i, "content": "sunny"}

    def refused(messages: list[dict[str, Any]]) -> str:
        for call in (runtime.invoke_model, runtime.invoke_model_with_response_stream):
            with pytest.raises(ClientError) as e:
                call(modelId=HAIKU, body=anthropic_body(messages=messages, tools=tools))
            assert e.value.response["Error"]["Code"] == "ValidationException"
        return str(e.value.response["Error"]["Message"])

    hi = {"role": "user", "content": "hi"}
    for tools_sent in ({}, {"tools": []}):
        with pytest.raises(ClientError) as e:
            runtime.invoke_model(modelId=HAIKU, body=anthropic_body(tool_choice={"type": "any"}, **tools_sent))
        assert e.value.response["Error"]["Message"] == "tool_choice.any may only be specified while providing tools"
    assert refused([]) == ('Malformed input request: #: subject must not be valid against schema {"required":["messages"]}'
                           "#/messages: expected minimum item count: 1, found: 0, please reformat your input and try again.")
    assert refused([hi, {"role": "assistant", "content": ""}, hi]) == (
        "messages.1: all messages must have non-empty content except for the optional final assistant message")
    assert refused([{"role": "user", "content": [{"type": "text", "text": ""}]}]) == (
        "messages: text content blocks must be non-empty")
    assert refused([{"role": "user", "content": " \n"}]) == "messages: text content blocks must contain non-whitespace text"
    assert refused([hi, {"role": "assistant", "content": [use]}, {"role": "user", "content": [
        {"type": "text", "text": "here"}, result("toolu_1")]}]) == (
        "messages.2: Did not find 1 `tool_result` block(s) at the beginning of this message. Messages following "
        "`tool_use` blocks must begin with a matching number of `tool_result` blocks.")
    assert refused([hi, {"role": "assistant", "content": [use]}, {"role": "user", "content": [result("toolu_9")]}]) == (
        "messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_9. Each `tool_result` "
        "block must have a corresponding `tool_use` block in the previous message.")
    answered = [hi, {"role": "assistant", "content": [use]},
                {"role": "user", "content": [result("toolu_1"), {"type": "text", "text": "so?"}]}]
    assert json.loads(runtime.invoke_model(modelId=HAIKU, body=anthropic_body(messages=answered, tools=tools))[
        "body"].read())["stop_reason"] == "end_turn"
    runtime.invoke_model(modelId=HAIKU, body=anthropic_body(messages=[hi, {"role": "assistant", "content": ""}]))
    # A prefill (the final assistant turn) may not end in whitespace.
    for prefill in ("Sure ", [{"type": "text", "text": "Sure\n"}]):
        assert refused([hi, {"role": "assistant", "content": prefill}]) == (
            "messages: final assistant content cannot end with trailing whitespace")
    runtime.invoke_model(modelId=HAIKU, body=anthropic_body(messages=[hi, {"role": "assistant", "content": "Sure"}]))


def test_converse_refuses_empty_turns_documents_without_text_and_claude_prefills_ending_in_whitespace(runtime):
    """Three refusals Bedrock users report, in Bedrock's words, by Converse, ConverseStream and CountTokens."""
    document = {"document": {"format": "txt", "name": "notes", "source": {"bytes": b"Quarterly figures."}}}

    def refused(model_id: str, messages: list[dict[str, Any]]) -> set[str]:
        said = set()
        for call in (lambda: runtime.converse(modelId=model_id, messages=messages),
                     lambda: runtime.converse_stream(modelId=model_id, messages=messages),
                     lambda: runtime.count_tokens(modelId=model_id, input={"converse": {"messages": messages}})):
            with pytest.raises(ClientError) as e:
                call()
            assert e.value.response["Error"]["Code"] == "ValidationException"
            said.add(str(e.value.response["Error"]["Message"]))
        return said

    for model_id in (HAIKU, "amazon.nova-lite-v1:0"):
        assert refused(model_id, [*USER_HELLO, {"role": "assistant", "content": []}]) == {
            "The content field in the Message object at messages.1 is empty. Add a ContentBlock object to the "
            "content field and try again."}
        assert refused(model_id, [{"role": "user", "content": [document]}]) == {
            "A text block must be included when using documents. Add a text block and retry your request."}
        runtime.converse(modelId=model_id, messages=[{"role": "user", "content": [document, {"text": "Summarize."}]}])
    prefill = [*USER_HELLO, {"role": "assistant", "content": [{"text": "Sure "}]}]
    assert refused(HAIKU, prefill) == {
        "The model returned the following errors: messages: final assistant content cannot end with trailing whitespace"}
    runtime.converse(modelId="amazon.nova-lite-v1:0", messages=prefill)  # Claude's rule, not Bedrock's
    runtime.converse(modelId=HAIKU, messages=[*USER_HELLO, {"role": "assistant", "content": [{"text": "Sure"}]}])


def test_a_document_name_bedrock_would_refuse_is_refused(runtime):
    """The document name Bedrock users trip on most ("report.pdf": the period), in Bedrock's words."""
    def ask(name: str) -> Any:
        document = {"document": {"format": "txt", "name": name, "source": {"bytes": b"Quarterly figures."}}}
        return runtime.converse(modelId=US_HAIKU, messages=[{"role": "user", "content": [
            {"text": "Summarize this."}, document]}])

    for name in ("report.pdf", "my_report", "two  spaces"):
        with pytest.raises(ClientError) as e:
            ask(name)
        assert e.value.response["Error"]["Message"].startswith(
            "The document file name can only contain alphanumeric characters, whitespace characters, hyphens, "
            "parentheses, and square brackets.")
    assert ask("Q3 report (final) [v2]")["stopReason"] == "end_turn"


def test_max_tokens_above_the_models_limit_is_refused_in_bedrocks_words(runtime):
    """Bedrock refuses a maxTokens above the model's output limit (vercel/ai#2772: 4096 for Claude 3.5 Sonnet);
    the limit itself is accepted, and a model with no known limit takes any."""
    for call in (runtime.converse, runtime.converse_stream):
        for model_id, limit in ((HAIKU, 4096), ("us.meta.llama3-2-11b-instruct-v1:0", 8192),
                                ("amazon.titan-text-premier-v1:0", 3000)):
            with pytest.raises(ClientError) as e:
                call(modelId=model_id, messages=USER_HELLO, inferenceConfig={"maxTokens": limit + 1})
            assert e.value.response["Error"]["Code"] == "ValidationException"
            assert e.value.response["Error"]["Message"] == (
                f"The maximum tokens you requested exceeds the model limit of {limit}. Try again with a maximum "
                f"tokens value that is lower than {limit}.")
            call(modelId=model_id, messages=USER_HELLO, inferenceConfig={"maxTokens": limit})
    runtime.converse(modelId="us.anthropic.claude-opus-4-1-20250805-v1:0", messages=USER_HELLO,
                     inferenceConfig={"maxTokens": 1_000_000})


def test_newer_claude_takes_a_temperature_or_a_top_p_not_both(runtime):
    """Claude Opus 4.1 and the 4.5 models refuse a temperature beside a top_p, through Converse and in their own
    body, in the words Bedrock passes on (BerriAI/litellm#15070, aws-samples/bedrock-access-gateway#191); either
    one alone is served, and older Claude models take both."""
    both = {"temperature": 0.5, "topP": 0.9}
    for model_id in ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "us.anthropic.claude-haiku-4-5-20251001-v1:0",
                     "us.anthropic.claude-opus-4-1-20250805-v1:0"):
        for call in (runtime.converse, runtime.converse_stream):
            with pytest.raises(ClientError) as e:
                call(modelId=model_id, messages=USER_HELLO, inferenceConfig=both)
            assert e.value.response["Error"]["Code"] == "ValidationException"
            assert e.value.response["Error"]["Message"] == (
                "The model returned the following errors: `temperature` and `top_p` cannot both be specified for this "
                "model. Please use only one.")
        for one in ({"temperature": 0.5}, {"topP": 0.9}):
            assert runtime.converse(modelId=model_id, messages=USER_HELLO, inferenceConfig=one)["stopReason"]
        with pytest.raises(ClientError) as e:
            runtime.invoke_model(modelId=model_id, body=anthropic_body(temperature=0.5, top_p=0.9))
        assert e.value.response["Error"]["Message"] == (
            "`temperature` and `top_p` cannot both be specified for this model. Please use only one.")
        runtime.invoke_model(modelId=model_id, body=anthropic_body(top_p=0.9))
    assert runtime.converse(modelId=HAIKU, messages=USER_HELLO, inferenceConfig=both)["stopReason"] == "end_turn"
    runtime.invoke_model(modelId=HAIKU, body=anthropic_body(temperature=0.5, top_p=0.9))


def test_claude_refuses_additional_fields_that_converse_already_sets(runtime):
    """``additionalModelRequestFields`` holding ``system`` beside Converse's own system prompt (or holding
    ``messages``): Bedrock's words (danny-avila/LibreChat#14246). Fields Converse does not set pass."""
    for fields, system in (({"system": "Be terse."}, [{"text": "Be brief."}]), ({"messages": []}, [])):
        with pytest.raises(ClientError) as e:
            runtime.converse(modelId=HAIKU, messages=USER_HELLO, system=system, additionalModelRequestFields=fields)
        assert e.value.response["Error"]["Message"] == (
            f"The additional field {next(iter(fields))} conflicts with an existing field.")
    runtime.converse(modelId=HAIKU, messages=USER_HELLO, system=[{"text": "Be brief."}],
                     additionalModelRequestFields={"top_k": 5})


def test_models_whose_invokemodel_body_outcrop_lacks_say_what_to_do_instead(runtime):
    """A text model whose own body outcrop does not implement points to Converse, which serves it; an image
    model (which Converse refuses too) is said to be outside what outcrop serves."""
    with pytest.raises(ClientError) as e:
        runtime.invoke_model(modelId="us.deepseek.r1-v1:0", body=json.dumps({"prompt": "hi"}))
    assert e.value.response["Error"]["Message"].endswith("use Converse for this model.")
    assert runtime.converse(modelId="us.deepseek.r1-v1:0", messages=USER_HELLO)["stopReason"] == "end_turn"
    with pytest.raises(ClientError) as e:
        runtime.invoke_model(modelId="us.stability.stable-image-erase-object-v1:0", body=json.dumps({"image": "x"}))
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert e.value.response["Error"]["Message"] == (
        "outcrop does not serve stability.stable-image-erase-object-v1:0: it makes image, and outcrop serves "
        "text and embedding models.")
