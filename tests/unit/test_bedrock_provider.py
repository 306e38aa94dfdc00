"""The bedrock backend's signing and translation, with botocore as the oracle.

botocore's own bedrock-runtime client is the reference: for the same request at the same instant, the
upstream request outcrop builds must have the same URL and the same ``Authorization`` header.
"""

from __future__ import annotations

import datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from outcrop.config import Deployment
from outcrop.errors import (
    AccessDenied,
    ModelError,
    ModelStreamError,
    ServiceUnavailable,
    Throttled,
    ValidationError,
)
from outcrop.providers import bedrock
from outcrop.providers.messages import BlockDelta, BlockStart, BlockStop, Metadata, ToolUse, Usage
from outcrop.wire.eventstream import encode_frame

ENDPOINT = "http://127.0.0.1:9"
NOW = datetime.datetime(2026, 11, 28, 12, 0, 0)
KEY, SECRET = "AKIDUPSTREAM", "upstream/secret+key"


class Captured(Exception):
    def __init__(self, request: Any) -> None:
        self.request = request


def botocore_request(model_id: str, region: str, token: str | None, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: NOW)
    client = boto3.client("bedrock-runtime", region_name=region, endpoint_url=ENDPOINT, aws_access_key_id=KEY,
                          aws_secret_access_key=SECRET, aws_session_token=token,
                          config=BotoConfig(retries={"max_attempts": 1}))

    def capture(request: Any, **_: Any) -> None:
        raise Captured(request)

    client.meta.events.register("before-send.bedrock-runtime.Converse", capture)
    with pytest.raises(Captured) as e:
        client.converse(modelId=model_id, messages=[{"role": "user", "content": [{"text": "hi"}]}])
    return e.value.request


@pytest.mark.parametrize("model_id", [
    "anthropic.claude-3-haiku-20240307-v1:0",
    "us.anthropic.claude-3-haiku-20240307-v1:0",
    "arn:aws:bedrock:us-west-2:111122223333:application-inference-profile/abcd1234efgh",
])
@pytest.mark.parametrize("token", [None, "session/token=="])
def test_upstream_request_is_signed_exactly_as_botocore_signs_it(model_id, token, monkeypatch):
    reference = botocore_request(model_id, "us-west-2", token, monkeypatch)
    deployment = Deployment(backend="bedrock", url=ENDPOINT, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                            aws_session_token=token)
    url = bedrock.operation_url(bedrock.endpoint(deployment, "us-west-2"), model_id, "converse")
    assert url == reference.url
    headers = bedrock.signed_headers(deployment, "us-west-2", url, reference.body,
                                     {"Content-Type": "application/json"})
    sent = {k: v.decode() if isinstance(v, bytes) else v for k, v in reference.headers.items()}
    assert headers["Authorization"] == sent["Authorization"]
    assert headers["X-Amz-Date"] == sent["X-Amz-Date"]
    assert headers.get("X-Amz-Security-Token") == sent.get("X-Amz-Security-Token")


def test_api_key_is_sent_as_bearer_and_nothing_is_signed():
    deployment = Deployment(backend="bedrock", api_key="ABSK-example")
    headers = bedrock.signed_headers(deployment, "eu-west-1", "https://x/model/m/converse", b"{}", {})
    assert headers == {"Authorization": "Bearer ABSK-example"}


def test_default_endpoint_is_aws_bedrock_runtime_of_the_upstream_region():
    deployment = Deployment(backend="bedrock", api_key="k", upstream_region="eu-central-1")
    target = bedrock.Target("us-east-1", "m", deployment)
    region = bedrock.upstream_region(deployment, target)
    assert bedrock.endpoint(deployment, region) == "https://bedrock-runtime.eu-central-1.amazonaws.com"


@pytest.mark.parametrize(("status", "headers", "body", "kind"), [
    (429, {"x-amzn-errortype": "ThrottlingException:http://internal.amazon.com/coral/"}, b'{"message":"slow"}',
     Throttled),
    (503, {}, b'{"__type":"com.amazon#ServiceUnavailableException","message":"down"}', ServiceUnavailable),
    (424, {"x-amzn-errortype": "ModelErrorException"}, b'{"message":"m","originalStatusCode":500}', ModelError),
    (400, {"x-amzn-errortype": "ValidationException"}, b'{"message":"bad"}', ValidationError),
    (403, {"x-amzn-errortype": "UnrecognizedClientException"}, b'{"message":"who"}', AccessDenied),
    (403, {"x-amzn-errortype": "AccessDeniedException"}, b'{"message":"no"}', AccessDenied),
    (500, {}, b"<html>", ServiceUnavailable),
    (429, {}, b"", Throttled),
])
def test_upstream_errors_become_the_same_aws_errors(status, headers, body, kind):
    error = bedrock.upstream_error(status, headers, body)
    assert type(error) is kind
    if kind is ModelError:
        assert error.fields == {"originalStatusCode": 500}


def test_stream_translation_adds_text_block_starts_and_keeps_tool_starts():
    t = bedrock.StreamTranslator()
    events = []
    for name, value in [
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}}),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{}"}}}),
        ("metadata", {"usage": {"inputTokens": 3, "outputTokens": 2}, "metrics": {"latencyMs": 1}}),
    ]:
        events += t.events(name, value)
    assert events == [BlockStart(0), BlockDelta(0, text="Hi"), BlockStop(0), BlockStart(1, ToolUse("t1", "f", {})),
                      BlockDelta(1, tool_input="{}"), Metadata(Usage(3, 2))]


def test_exception_frames_become_errors():
    from botocore.eventstream import EventStreamBuffer

    decoder = EventStreamBuffer()
    decoder.add_data(encode_frame({":message-type": "exception", ":exception-type": "throttlingException"},
                                  b'{"message":"slow down"}'))
    decoder.add_data(encode_frame({":message-type": "exception", ":exception-type": "weirdException"}, b"{}"))
    first, second = list(decoder)
    assert type(bedrock._message_error(first)) is Throttled
    assert type(bedrock._message_error(second)) is ModelStreamError


def test_request_metadata_goes_upstream_as_a_valid_converse_input() -> None:
    from botocore.validate import ParamValidator

    from outcrop.runtime.converse import chat_request

    params = {"modelId": "m", "messages": [{"role": "user", "content": [{"text": "hi"}]}],
              "requestMetadata": {"tenant": "acme", "job": "nightly-42"}}
    body = bedrock.converse_body(chat_request(params))
    assert body["requestMetadata"] == {"tenant": "acme", "job": "nightly-42"}
    shape = boto3.client("bedrock-runtime", region_name="us-east-1").meta.service_model.operation_model("Converse").input_shape
    report = ParamValidator().validate({"modelId": "m", **body}, shape)
    assert not report.has_errors(), report.generate_report()
    without = bedrock.converse_body(chat_request({k: v for k, v in params.items() if k != "requestMetadata"}))
    assert "requestMetadata" not in without


def test_upstream_calls_leave_no_reference_cycle() -> None:
    """httpx's response and its stream hold each other; the provider unlinks them once a call is done (see
    tests/unit/test_no_garbage_cycles.py for why it matters)."""
    import asyncio

    import httpx
    from gc_check import garbage_after

    from outcrop.providers.base import Target
    from outcrop.runtime.converse import chat_request

    answer = {"output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}}, "stopReason": "end_turn",
              "usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4}, "metrics": {"latencyMs": 1}}
    frames = b"".join(encode_frame({":message-type": "event", ":event-type": name}, payload) for name, payload in [
        ("messageStart", b'{"role":"assistant"}'),
        ("contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"text":"hi"}}'),
        ("contentBlockStop", b'{"contentBlockIndex":0}'),
        ("messageStop", b'{"stopReason":"end_turn"}'),
        ("metadata", b'{"usage":{"inputTokens":3,"outputTokens":1,"totalTokens":4},"metrics":{"latencyMs":1}}'),
    ])

    def upstream(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/converse-stream"):
            return httpx.Response(200, content=frames)
        if b"fail" in request.content:
            return httpx.Response(429, json={"message": "slow down"})
        return httpx.Response(200, json=answer)

    async def main() -> list[str]:
        provider = bedrock.BedrockProvider()
        provider.client = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
        target = Target("us-east-1", "anthropic.claude-3-haiku-20240307-v1:0",
                        Deployment(backend="bedrock", url=ENDPOINT, aws_access_key_id=KEY, aws_secret_access_key=SECRET))
        ok = chat_request({"messages": [{"role": "user", "content": [{"text": "x"}]}]})
        failing = chat_request({"messages": [{"role": "user", "content": [{"text": "fail"}]}]})

        async def calls() -> None:
            await provider.chat(target, ok)
            async for _ in provider.chat_stream(target, ok):
                pass
            with pytest.raises(Throttled):
                await provider.chat(target, failing)

        try:
            garbage = await garbage_after(calls, 3)
        finally:
            await provider.close()
        return sorted({type(o).__qualname__ for o in garbage
                       if type(o).__module__.split(".")[0] in ("httpx", "httpcore", "outcrop")})

    assert asyncio.run(main()) == []


@pytest.mark.parametrize("answer", [
    b"not json",
    b"[1, 2]",
    b'{"output": {"message": {"content": [{"toolUse": "oops"}]}}}',
    b'{"output": {"message": {"content": [{"text": "hi"}]}}, "usage": {"inputTokens": "many"}}',
])
def test_a_malformed_upstream_answer_is_a_model_error(answer: bytes) -> None:
    """Before: an answer of the wrong shape from the upstream raised AttributeError or ValueError: a 500."""
    import asyncio

    import httpx

    from outcrop.providers.base import Target
    from outcrop.runtime.converse import chat_request

    frames = encode_frame({":message-type": "event", ":event-type": "messageStart"}, b'{"role":"assistant"}') + \
        encode_frame({":message-type": "event", ":event-type": "contentBlockDelta"}, answer)

    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=frames if request.url.path.endswith("/converse-stream") else answer)

    async def main() -> None:
        provider = bedrock.BedrockProvider()
        provider.client = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
        target = Target("us-east-1", "anthropic.claude-3-haiku-20240307-v1:0",
                        Deployment(backend="bedrock", url=ENDPOINT, aws_access_key_id=KEY, aws_secret_access_key=SECRET))
        request = chat_request({"messages": [{"role": "user", "content": [{"text": "x"}]}]})
        try:
            with pytest.raises(ModelError, match="malformed"):
                await provider.chat(target, request)
            if not answer.startswith(b"{"):  # as a stream event's payload too
                with pytest.raises(ModelStreamError, match="malformed"):
                    async for _ in provider.chat_stream(target, request):
                        pass
        finally:
            await provider.close()

    asyncio.run(main())
