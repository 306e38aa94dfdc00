"""The openai backend against a real OpenAI-compatible server process (tests/support/fake_openai.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError, EventStreamError

from tests.conftest import ServerProcess, free_port
from tests.integration.runtime_helpers import HAIKU, HAIKU_PROFILE_ARN, server_for_module

LLAMA = "meta.llama3-8b-instruct-v1:0"
FAKE = Path(__file__).parents[1] / "support" / "fake_openai.py"


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(FAKE), str(port)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake_openai: str) -> Iterator[ServerProcess]:
    config = f"""
[[deployments]]
model = "anthropic.claude-3-haiku-*"
backend = "openai"
url = "{fake_openai}/v1"
backend_model = "fake-haiku"
timeout_seconds = 1.5

[[deployments]]
model = "{LLAMA}"
backend = "openai"
url = "{fake_openai}/v1"
api_key = "sk-test"
timeout_seconds = 1.5

[[deployments]]
model = "amazon.nova-2-lite-v1:0"
backend = "openai"
url = "{fake_openai}/v1"
backend_model = "fake-nova"
timeout_seconds = 1.5

[[deployments]]
model = "mistral.mistral-7b-instruct-v0:2"
backend = "openai"
url = "http://127.0.0.1:{free_port()}/v1"
"""
    yield from server_for_module(tmp_path_factory.mktemp("openai"), config)


@pytest.fixture(scope="module")
def runtime(server: ServerProcess) -> Any:
    return server.client("bedrock-runtime")


@pytest.fixture(scope="module")
def app_arn(server: ServerProcess) -> str:
    return server.client("bedrock").create_inference_profile(
        inferenceProfileName="openai-app", modelSource={"copyFrom": HAIKU_PROFILE_ARN})["inferenceProfileArn"]


def _said(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"text": text}]}]


def _received(fake_openai: str) -> list[dict[str, Any]]:
    return httpx.get(fake_openai + "/requests").json()


def test_converse_through_a_profile_reaches_the_backend_with_its_usage(runtime, app_arn, fake_openai):
    r = runtime.converse(modelId=app_arn, messages=_said("Hello there"), system=[{"text": "Be kind."}],
                         inferenceConfig={"maxTokens": 20, "temperature": 0.5})
    assert r["output"]["message"]["content"] == [{"text": "echo: Hello there"}]
    assert r["usage"] == {"inputTokens": 102, "outputTokens": 3, "totalTokens": 105}  # the backend's figures
    sent = _received(fake_openai)[-1]
    assert sent["model"] == "fake-haiku" and sent["max_tokens"] == 20 and sent["temperature"] == 0.5
    assert sent["messages"][0] == {"role": "system", "content": "Be kind."}


def test_converse_stream_translates_sse_deltas(runtime, app_arn):
    events = list(runtime.converse_stream(modelId=app_arn, messages=_said("one two three"))["stream"])
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == "echo: one two three"
    assert events[-1]["metadata"]["usage"]["inputTokens"] == 101
    assert next(e for e in events if "messageStop" in e)["messageStop"]["stopReason"] == "end_turn"


def test_invoke_model_llama_and_its_stream(runtime, fake_openai):
    body = json.dumps({"prompt": "Hi llama", "max_gen_len": 2})
    out = json.loads(runtime.invoke_model(modelId=LLAMA, body=body)["body"].read())
    assert out == {"generation": "echo: Hi", "prompt_token_count": 101, "generation_token_count": 2,
                   "stop_reason": "length"}
    assert _received(fake_openai)[-1]["model"] == LLAMA
    chunks = [json.loads(e["chunk"]["bytes"]) for e in
              runtime.invoke_model_with_response_stream(modelId=LLAMA, body=body)["body"]]
    assert "".join(c["generation"] for c in chunks) == "echo: Hi"
    assert chunks[-1]["stop_reason"] == "length"


def test_tool_calls_translate_both_ways(runtime, app_arn, fake_openai):
    tool_config = {"tools": [{"toolSpec": {"name": "search", "description": "Search",
                                           "inputSchema": {"json": {"type": "object"}}}}],
                   "toolChoice": {"any": {}}}
    messages: list[dict[str, Any]] = _said("find it")
    first = runtime.converse(modelId=app_arn, messages=messages, toolConfig=tool_config)
    assert first["stopReason"] == "tool_use"
    use = first["output"]["message"]["content"][0]["toolUse"]
    assert use == {"toolUseId": "call_fake1", "name": "search", "input": {"q": "fake"}}
    sent = _received(fake_openai)[-1]
    assert sent["tool_choice"] == "required"
    assert sent["tools"][0]["function"]["name"] == "search"
    messages += [first["output"]["message"], {"role": "user", "content": [
        {"toolResult": {"toolUseId": "call_fake1", "content": [{"text": "found"}]}}]}]
    second = runtime.converse(modelId=app_arn, messages=messages, toolConfig=tool_config)
    assert second["output"]["message"]["content"][0]["text"] == "echo: found"
    sent = _received(fake_openai)[-1]
    assert sent["messages"][-2]["tool_calls"][0]["function"] == {"name": "search", "arguments": '{"q":"fake"}'}
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": "call_fake1", "content": "found"}
    events = list(runtime.converse_stream(modelId=app_arn, messages=_said("find"), toolConfig=tool_config)["stream"])
    start = next(e for e in events if "contentBlockStart" in e)["contentBlockStart"]["start"]["toolUse"]
    assert start == {"toolUseId": "call_fake1", "name": "search"}
    fragments = "".join(e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events if "contentBlockDelta" in e)
    assert json.loads(fragments) == {"q": "fake"}


def test_a_reasoning_models_thinking_becomes_reasoning_content(runtime, app_arn):
    r = runtime.converse(modelId=app_arn, messages=_said("THINK twice"))
    assert r["output"]["message"]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "Let me think."}}}, {"text": "echo: THINK twice"}]
    events = list(runtime.converse_stream(modelId=app_arn, messages=_said("THINK twice"))["stream"])
    deltas = [(e["contentBlockDelta"]["contentBlockIndex"], e["contentBlockDelta"]["delta"])
              for e in events if "contentBlockDelta" in e]
    assert "".join(d["reasoningContent"]["text"] for i, d in deltas if i == 0) == "Let me think."
    assert "".join(d["text"] for i, d in deltas if i == 1) == "echo: THINK twice"
    assert [e["contentBlockStop"]["contentBlockIndex"] for e in events if "contentBlockStop" in e] == [0, 1]


def test_nova_2_reasoning_effort_reaches_the_backend_and_its_reasoning_comes_back(runtime, fake_openai):
    """Nova 2's ``reasoningConfig`` becomes OpenAI's ``reasoning_effort``; the backend's own reasoning is
    shown as it gave it (it is not Nova 2, whose reasoning is redacted)."""
    effort = {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "high"}}
    r = runtime.converse(modelId="us.amazon.nova-2-lite-v1:0", messages=_said("THINK twice"),
                         additionalModelRequestFields=effort)
    assert _received(fake_openai)[-1]["reasoning_effort"] == "high"
    assert r["output"]["message"]["content"][0] == {"reasoningContent": {"reasoningText": {"text": "Let me think."}}}
    body = {"schemaVersion": "messages-v1", "messages": _said("Hi"),
            "inferenceConfig": {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "low"}}}
    runtime.invoke_model(modelId="us.amazon.nova-2-lite-v1:0", body=json.dumps(body))
    assert _received(fake_openai)[-1]["reasoning_effort"] == "low"
    runtime.converse(modelId="us.amazon.nova-2-lite-v1:0", messages=_said("Hi"))
    assert "reasoning_effort" not in _received(fake_openai)[-1]


def test_structured_output_reaches_the_backend_as_response_format(runtime, app_arn, fake_openai):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    runtime.converse(modelId=app_arn, messages=_said("Where?"), outputConfig={"textFormat": {
        "type": "json_schema", "structure": {"jsonSchema": {"schema": json.dumps(schema), "name": "place"}}}})
    assert _received(fake_openai)[-1]["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": True}}


@pytest.mark.parametrize(("trigger", "code", "status"), [
    ("FAIL429", "ThrottlingException", 429),
    ("FAIL500", "ModelErrorException", 424),
    ("FAIL503", "ServiceUnavailableException", 503),
    ("SLOW", "ModelTimeoutException", 408),
])
def test_backend_failures_are_aws_errors(runtime, trigger, code, status):
    for call in (
        lambda: runtime.converse(modelId=HAIKU, messages=_said(trigger)),
        lambda: runtime.converse_stream(modelId=HAIKU, messages=_said(trigger)),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] == code
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


def test_unreachable_backend_is_service_unavailable(runtime):
    with pytest.raises(ClientError) as e:
        runtime.invoke_model(modelId="mistral.mistral-7b-instruct-v0:2", body=json.dumps({"prompt": "x"}))
    assert e.value.response["Error"]["Code"] == "ServiceUnavailableException"


def test_stream_cut_short_ends_with_an_exception_frame(runtime):
    stream = runtime.converse_stream(modelId=HAIKU, messages=_said("DROP this please"))["stream"]
    seen = []
    with pytest.raises(EventStreamError) as e:
        for event in stream:
            seen.append(next(iter(event)))
    assert seen and seen[0] == "messageStart"
    assert e.value.response["Error"]["Code"] == "modelStreamErrorException"


def test_a_malformed_answer_from_the_backend_is_a_model_error_not_an_internal_one(runtime):
    # Before: an answer of the wrong shape, or a stream line that is not JSON, was a 500 / internalServerException.
    with pytest.raises(ClientError) as e:
        runtime.converse(modelId=HAIKU, messages=_said("GARBLE please"))
    assert e.value.response["Error"]["Code"] == "ModelErrorException"
    assert "malformed" in e.value.response["Error"]["Message"]
    for stream in (
        runtime.converse_stream(modelId=HAIKU, messages=_said("GARBLE please"))["stream"],
        runtime.invoke_model_with_response_stream(
            modelId=LLAMA, body=json.dumps({"prompt": "GARBLE please"}))["body"],
    ):
        with pytest.raises(EventStreamError) as e:
            for _ in stream:
                pass
        assert e.value.response["Error"]["Code"] == "modelStreamErrorException"
        assert "malformed stream event" in e.value.response["Error"]["Message"]


def test_token_counts_the_backend_garbles_are_counted_by_outcrops_rule(runtime):
    answer = runtime.converse(modelId=HAIKU, messages=_said("ODDUSAGE please"))
    usage = answer["usage"]
    assert usage["inputTokens"] > 0 and usage["outputTokens"] > 0
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
