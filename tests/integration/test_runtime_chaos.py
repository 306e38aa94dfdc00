"""The chaos API: rules set over HTTP turn invocations served in a Region into AWS errors or delays."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.conftest import ServerProcess
from tests.integration.runtime_helpers import HAIKU, US_HAIKU, USER_HELLO, anthropic_body, server_for_module


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from server_for_module(tmp_path_factory.mktemp("chaos"))


@pytest.fixture
def chaos(server: ServerProcess) -> Iterator[str]:
    url = server.url + "/_outcrop/chaos"
    yield url
    httpx.delete(url)


@pytest.fixture(scope="module")
def runtime(server: ServerProcess) -> Any:
    return server.client("bedrock-runtime")


@pytest.mark.parametrize(("fault", "code", "status"), [
    ("throttle", "ThrottlingException", 429),
    ("error", "ModelErrorException", 424),
    ("outage", "ServiceUnavailableException", 503),
])
def test_fault_rule_turns_invocations_in_its_region_into_aws_errors(runtime, chaos, fault, code, status):
    # Every Region of the US profile, or the router would fail over (tests/integration/test_routing_*).
    r = httpx.post(chaos, json={"region": "us-*", "fault": fault})
    assert r.status_code == 201 and r.json()["fault"] == fault
    for call in (lambda: runtime.converse(modelId=US_HAIKU, messages=USER_HELLO),
                 lambda: runtime.invoke_model(modelId=HAIKU, body=anthropic_body()),
                 lambda: runtime.converse_stream(modelId=HAIKU, messages=USER_HELLO)):
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] == code
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


def test_rules_are_listed_scoped_and_removed(server, runtime, chaos):
    other = httpx.post(chaos, json={"region": "us-west-2", "fault": "outage"}).json()
    model_only = httpx.post(chaos, json={"region": "us-east-1", "model": "amazon.*", "fault": "throttle",
                                         "probability": 1}).json()
    assert [r["id"] for r in httpx.get(chaos).json()["rules"]] == [other["id"], model_only["id"]]
    # Served in us-east-1 (the caller's Region) and not an amazon.* model: untouched.
    assert runtime.converse(modelId=US_HAIKU, messages=USER_HELLO)["stopReason"] == "end_turn"
    with pytest.raises(ClientError):
        runtime.converse(modelId="amazon.nova-lite-v1:0", messages=USER_HELLO)
    assert httpx.delete(f"{chaos}/{model_only['id']}").status_code == 200
    assert runtime.converse(modelId="amazon.nova-lite-v1:0", messages=USER_HELLO)["stopReason"] == "end_turn"
    west = server.client("bedrock-runtime", region="us-west-2")
    with pytest.raises(ClientError) as e:
        west.converse(modelId=HAIKU, messages=USER_HELLO)
    assert e.value.response["Error"]["Code"] == "ServiceUnavailableException"
    assert httpx.delete(chaos).json() == {"rules": []}
    assert west.converse(modelId=HAIKU, messages=USER_HELLO)["stopReason"] == "end_turn"


def test_latency_rule_delays_and_zero_probability_never_fires(runtime, chaos):
    httpx.post(chaos, json={"region": "us-east-1", "fault": "latency", "latencyMs": 400})
    httpx.post(chaos, json={"region": "us-east-1", "fault": "throttle", "probability": 0})
    r = runtime.converse(modelId=HAIKU, messages=USER_HELLO)
    assert r["metrics"]["latencyMs"] >= 400  # the delay counts as model latency


def test_invalid_rule_is_rejected_with_every_problem(chaos):
    r = httpx.post(chaos, json={"fault": "meteor", "probability": 2})
    assert r.status_code == 400
    assert r.headers["x-amzn-errortype"] == r.json()["__type"] == "ValidationException"
    message = r.json()["message"]
    assert "region" in message and "fault" in message and "probability" in message
    r = httpx.post(chaos, json={"region": "x" * 300, "fault": "latency", "latencyMs": 9223372036854775808})
    assert r.status_code == 400 and "at most 256" in r.json()["message"] and "600000" in r.json()["message"]
    # 0 is a valid latencyMs for other faults, and the refusal of it for a latency rule says what is.
    r = httpx.post(chaos, json={"region": "us-east-1", "fault": "latency", "latencyMs": 0})
    assert r.status_code == 400 and "latency rule needs a latencyMs from 1 to 600000" in r.json()["message"]
