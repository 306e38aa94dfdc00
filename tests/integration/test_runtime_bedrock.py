"""The bedrock backend, outcrop → outcrop: a front server whose deployments point at an upstream server.

The upstream serves the builtin model, which is deterministic, so what a caller gets through the front
must equal what the same call gets from the upstream directly. Upstream failures are made with the
upstream's own chaos API, for every Region (else the upstream's router would fail over).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.conftest import ServerProcess, free_port
from tests.integration.runtime_helpers import HAIKU, US_HAIKU, USER_HELLO, anthropic_body, start_server

UPSTREAM_REGION = "us-west-2"
TITAN_EMBED = "amazon.titan-embed-text-v2:0"
COHERE_EMBED = "cohere.embed-english-v3"
LLAMA = "meta.llama3-8b-instruct-v1:0"
NOVA_MICRO = "amazon.nova-micro-v1:0"
TOOLS = {"tools": [{"toolSpec": {"name": "lookup", "description": "Look it up",
                                 "inputSchema": {"json": {"type": "object", "properties": {"q": {"type": "string"}}}}}}],
         "toolChoice": {"any": {}}}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("upstream"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory, upstream: ServerProcess) -> Iterator[ServerProcess]:
    signed = f'url = "{upstream.url}"\naws_access_key_id = "AKIDFRONT"\naws_secret_access_key = "front/secret"'
    config = f"""
[[deployments]]
model = "anthropic.claude-3-haiku-*"
backend = "bedrock"
{signed}
aws_session_token = "session-token"
upstream_region = "{UPSTREAM_REGION}"
backend_model = "{US_HAIKU}"
timeout_seconds = 1.5

[[deployments]]
model = "{TITAN_EMBED}"
backend = "bedrock"
{signed}

[[deployments]]
model = "{COHERE_EMBED}"
backend = "bedrock"
url = "{upstream.url}"
api_key = "ABSK-front-key"

[[deployments]]
model = "{NOVA_MICRO}"
backend = "bedrock"
{signed}
backend_model = "no.such-model-v9:0"

[[deployments]]
model = "amazon.nova-2-lite-v1:0"
backend = "bedrock"
{signed}
upstream_region = "{UPSTREAM_REGION}"
backend_model = "us.amazon.nova-2-lite-v1:0"

[[deployments]]
model = "{LLAMA}"
backend = "bedrock"
url = "http://127.0.0.1:{free_port()}"
api_key = "ABSK-front-key"
"""
    srv = start_server(tmp_path_factory.mktemp("front"), config)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def via_front(front: ServerProcess) -> Any:
    return front.client("bedrock-runtime")


@pytest.fixture(scope="module")
def direct(upstream: ServerProcess) -> Any:
    """What the front's deployment asks for, asked of the upstream directly."""
    return upstream.client("bedrock-runtime", region=UPSTREAM_REGION)


@pytest.fixture
def upstream_chaos(upstream: ServerProcess) -> Iterator[str]:
    url = upstream.url + "/_outcrop/chaos"
    yield url
    httpx.delete(url)


def _without_latency(response: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k not in ("metrics", "ResponseMetadata")}


def test_converse_through_the_upstream_equals_the_upstream_answer(via_front, direct):
    kwargs: dict[str, Any] = {"messages": USER_HELLO, "system": [{"text": "Be brief."}],
                              "inferenceConfig": {"maxTokens": 40, "temperature": 0.2}}
    through = via_front.converse(modelId=HAIKU, **kwargs)
    assert through["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert _without_latency(through) == _without_latency(direct.converse(modelId=US_HAIKU, **kwargs))
    assert through["usage"]["outputTokens"] > 0


def test_request_metadata_is_accepted_upstream(via_front, direct):
    kwargs: dict[str, Any] = {"messages": USER_HELLO, "requestMetadata": {"tenant": "acme", "job": "nightly-42"}}
    through = via_front.converse(modelId=HAIKU, **kwargs)
    assert _without_latency(through) == _without_latency(direct.converse(modelId=US_HAIKU, **kwargs))


def test_tool_use_round_trips_through_the_upstream(via_front, direct):
    first = via_front.converse(modelId=HAIKU, messages=USER_HELLO, toolConfig=TOOLS)
    assert first["stopReason"] == "tool_use"
    assert _without_latency(first) == _without_latency(direct.converse(modelId=US_HAIKU, messages=USER_HELLO,
                                                                       toolConfig=TOOLS))
    use = first["output"]["message"]["content"][-1]["toolUse"]
    messages = [*USER_HELLO, first["output"]["message"], {"role": "user", "content": [
        {"toolResult": {"toolUseId": use["toolUseId"], "content": [{"json": {"answer": 42}}]}}]}]
    auto = {**TOOLS, "toolChoice": {"auto": {}}}
    second = via_front.converse(modelId=HAIKU, messages=messages, toolConfig=auto)
    assert _without_latency(second) == _without_latency(direct.converse(modelId=US_HAIKU, messages=messages,
                                                                        toolConfig=auto))


def test_structured_output_is_forwarded_upstream(via_front, direct):
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3, "maximum": 3}}, "required": ["n"]}
    kwargs = {"messages": USER_HELLO, "outputConfig": {"textFormat": {"type": "json_schema", "structure": {
        "jsonSchema": {"schema": json.dumps(schema), "name": "count"}}}}}
    through = via_front.converse(modelId=HAIKU, **kwargs)
    assert json.loads(through["output"]["message"]["content"][0]["text"]) == {"n": 3}
    assert _without_latency(through) == _without_latency(direct.converse(modelId=US_HAIKU, **kwargs))


def test_reasoning_comes_through_the_upstream(via_front, direct):
    kwargs = {"messages": USER_HELLO, "additionalModelRequestFields": {"thinking": {"type": "enabled"}}}
    through = via_front.converse(modelId=HAIKU, **kwargs)
    assert "reasoningContent" in through["output"]["message"]["content"][0]
    assert _without_latency(through) == _without_latency(direct.converse(modelId=US_HAIKU, **kwargs))
    assert _events(via_front.converse_stream(modelId=HAIKU, **kwargs)["stream"]) == \
        _events(direct.converse_stream(modelId=US_HAIKU, **kwargs)["stream"])
    # Sent back with the next turn, the reasoning and its signature go upstream too.
    turn = [*USER_HELLO, through["output"]["message"], {"role": "user", "content": [{"text": "And?"}]}]
    assert _without_latency(via_front.converse(modelId=HAIKU, **{**kwargs, "messages": turn})) == \
        _without_latency(direct.converse(modelId=US_HAIKU, **{**kwargs, "messages": turn}))


def test_nova_2_reasoning_config_goes_upstream(via_front, direct):
    """Asked in Converse or in Nova's own InvokeModel body, the effort reaches the upstream, whose redacted
    reasoning and its output tokens come back as they are."""
    nova = "us.amazon.nova-2-lite-v1:0"
    kwargs = {"messages": USER_HELLO,
              "additionalModelRequestFields": {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "high"}}}
    through = via_front.converse(modelId=nova, **kwargs)
    assert through["output"]["message"]["content"][0] == {"reasoningContent": {"reasoningText": {"text": "[REDACTED]"}}}
    assert _without_latency(through) == _without_latency(direct.converse(modelId=nova, **kwargs))
    body = json.dumps({"schemaVersion": "messages-v1", "messages": USER_HELLO,
                       "inferenceConfig": {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "high"}}})
    native = json.loads(via_front.invoke_model(modelId=nova, body=body)["body"].read())
    assert native["usage"]["outputTokens"] == through["usage"]["outputTokens"]
    assert native["output"]["message"]["content"] == through["output"]["message"]["content"]


def test_cache_points_go_upstream_and_its_cache_usage_comes_back(via_front):
    doc = " ".join(f"clause{i}" for i in range(2200))  # Claude 3 Haiku caches from 2,048 tokens
    system = [{"text": doc}, {"cachePoint": {"type": "default", "ttl": "1h"}}]
    first = via_front.converse(modelId=HAIKU, system=system, messages=USER_HELLO)["usage"]
    second = via_front.converse(modelId=HAIKU, system=system, messages=USER_HELLO)["usage"]
    assert (first.get("cacheWriteInputTokens"), second.get("cacheReadInputTokens")) == (2200, 2200)
    assert first["cacheDetails"] == [{"ttl": "1h", "inputTokens": 2200}] and "cacheDetails" not in second


def _events(stream: Any) -> list[dict[str, Any]]:
    out = []
    for event in stream:
        event.get("metadata", {}).pop("metrics", None)
        out.append(event)
    return out


def test_converse_stream_is_decoded_and_re_emitted(via_front, direct):
    through = _events(via_front.converse_stream(modelId=HAIKU, messages=USER_HELLO)["stream"])
    assert through == _events(direct.converse_stream(modelId=US_HAIKU, messages=USER_HELLO)["stream"])
    assert [next(iter(e)) for e in through][:2] == ["messageStart", "contentBlockDelta"]
    assert "metadata" in through[-1]
    tools = _events(via_front.converse_stream(modelId=HAIKU, messages=USER_HELLO, toolConfig=TOOLS)["stream"])
    assert tools == _events(direct.converse_stream(modelId=US_HAIKU, messages=USER_HELLO, toolConfig=TOOLS)["stream"])
    assert any("contentBlockStart" in e for e in tools)


def test_invoke_model_and_its_stream_in_the_family_body(via_front, direct):
    through = via_front.invoke_model(modelId=HAIKU, body=anthropic_body())
    upstream = direct.invoke_model(modelId=US_HAIKU, body=anthropic_body())
    mine, theirs = json.loads(through["body"].read()), json.loads(upstream["body"].read())
    assert mine["content"] == theirs["content"] and mine["usage"] == theirs["usage"]
    assert mine["stop_reason"] == theirs["stop_reason"]
    headers = through["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-bedrock-output-token-count"] == str(theirs["usage"]["output_tokens"])

    def text(response: Any) -> str:
        chunks = [json.loads(e["chunk"]["bytes"]) for e in response["body"]]
        return "".join(c.get("delta", {}).get("text", "") for c in chunks)

    streamed = text(via_front.invoke_model_with_response_stream(modelId=HAIKU, body=anthropic_body()))
    assert streamed == text(direct.invoke_model_with_response_stream(modelId=US_HAIKU, body=anthropic_body()))
    assert streamed == theirs["content"][0]["text"]


@pytest.mark.parametrize(("model_id", "body"), [
    (TITAN_EMBED, {"inputText": "The quick brown fox", "dimensions": 256}),
    (COHERE_EMBED, {"texts": ["one", "two words"], "input_type": "search_query"}),
])
def test_embeddings_go_upstream_in_the_family_body(front, upstream, model_id, body):
    through = front.client("bedrock-runtime").invoke_model(modelId=model_id, body=json.dumps(body))
    theirs = upstream.client("bedrock-runtime").invoke_model(modelId=model_id, body=json.dumps(body))
    mine, expected = json.loads(through["body"].read()), json.loads(theirs["body"].read())
    key = "embedding" if "inputText" in body else "embeddings"
    assert mine[key] == expected[key]
    assert (through["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-input-token-count"]
            == theirs["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-input-token-count"])


@pytest.mark.parametrize(("fault", "code", "status"), [
    ("throttle", "ThrottlingException", 429),
    ("error", "ModelErrorException", 424),
    ("outage", "ServiceUnavailableException", 503),
])
def test_upstream_errors_reach_the_caller_as_the_same_errors(via_front, upstream_chaos, fault, code, status):
    httpx.post(upstream_chaos, json={"region": "*", "fault": fault}).raise_for_status()
    for call in (lambda: via_front.converse(modelId=HAIKU, messages=USER_HELLO),
                 lambda: via_front.converse_stream(modelId=HAIKU, messages=USER_HELLO),
                 lambda: via_front.invoke_model(modelId=HAIKU, body=anthropic_body())):
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] == code
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


def test_upstream_validation_error_is_passed_on(via_front):
    # The front's deployment names a model the upstream does not know.
    with pytest.raises(ClientError) as e:
        via_front.converse(modelId=NOVA_MICRO, messages=USER_HELLO)
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert e.value.response["Error"]["Message"] == "The provided model identifier is invalid."
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_slow_upstream_is_a_model_timeout(via_front, upstream_chaos):
    httpx.post(upstream_chaos, json={"region": "*", "fault": "latency", "latencyMs": 3000})
    for call in (lambda: via_front.converse(modelId=HAIKU, messages=USER_HELLO),
                 lambda: via_front.converse_stream(modelId=HAIKU, messages=USER_HELLO)):
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] == "ModelTimeoutException"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 408


def test_unreachable_upstream_is_service_unavailable(via_front):
    with pytest.raises(ClientError) as e:
        via_front.invoke_model(modelId=LLAMA, body=json.dumps({"prompt": "Hello"}))
    assert e.value.response["Error"]["Code"] == "ServiceUnavailableException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


def test_application_profile_on_the_front_is_served_upstream(front, via_front, direct):
    arn = front.client("bedrock").create_inference_profile(
        inferenceProfileName="upstream-app", modelSource={"copyFrom": f"arn:aws:bedrock:us-east-1:123456789012:"
                                                                      f"inference-profile/{US_HAIKU}"},
    )["inferenceProfileArn"]
    through = via_front.converse(modelId=arn, messages=USER_HELLO)
    assert _without_latency(through) == _without_latency(direct.converse(modelId=US_HAIKU, messages=USER_HELLO))
