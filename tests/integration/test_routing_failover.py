"""Cross-Region routing against a real server: failover, capacity spill-over, breakers, streams, limits.

Chaos rules make Regions fail; the builtin model's ``ttft_ms`` holds requests long enough to fill a
deployment's ``max_concurrency``; the fake OpenAI server cuts a stream after its first bytes; a tiny
server answering 400 to everything counts how often a client error is sent.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError, EventStreamError

from tests.conftest import ACCESS_KEY, SECRET_KEY, ServerProcess, free_port
from tests.integration.runtime_helpers import USER_HELLO, server_for_module

NOVA_LITE = "us.amazon.nova-lite-v1:0"  # outage
NOVA_PRO = "us.amazon.nova-pro-v1:0"  # breaker
NOVA_MICRO = "us.amazon.nova-micro-v1:0"  # capacity: 2 concurrent per Region, 1 s each
NOVA_PREMIER = "us.amazon.nova-premier-v1:0"  # every Region out
SCOUT = "us.meta.llama4-scout-17b-instruct-v1:0"  # the fake OpenAI server
MAVERICK = "us.meta.llama4-maverick-17b-instruct-v1:0"  # a backend that answers 400
REGIONS = {"us-east-1", "us-east-2", "us-west-2"}
FAKE = Path(__file__).parents[1] / "support" / "fake_openai.py"
REGION_HEADER = "x-outcrop-inference-region"


class _BadRequest(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    calls = 0

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).calls += 1
        raw = b'{"error": {"message": "max_tokens is too large for this model"}}'
        self.send_response(400)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


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
def bad_request() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _BadRequest)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake_openai: str, bad_request: str) -> Iterator[ServerProcess]:
    config = f"""
[routing]
breaker_failures = 3
breaker_cooldown_ms = 800
total_timeout_ms = 10000

[[deployments]]
model = "amazon.nova-micro-v1:0"
max_concurrency = 2
ttft_ms = 1000

[[deployments]]
model = "meta.llama4-scout-17b-instruct-v1:0"
backend = "openai"
url = "{fake_openai}/v1"

[[deployments]]
model = "meta.llama4-maverick-17b-instruct-v1:0"
backend = "openai"
url = "{bad_request}"
"""
    yield from server_for_module(tmp_path_factory.mktemp("routing"), config)


@pytest.fixture
def chaos(server: ServerProcess) -> Iterator[str]:
    url = server.url + "/_outcrop/chaos"
    yield url
    httpx.delete(url)


@pytest.fixture(scope="module")
def runtime(server: ServerProcess) -> Any:
    # No client retries: every attempt seen here is the router's.
    return boto3.client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=server.url, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=BotoConfig(retries={"total_max_attempts": 1}, max_pool_connections=16, read_timeout=30),
    )


def served_in(response: dict[str, Any]) -> str:
    return str(response["ResponseMetadata"]["HTTPHeaders"][REGION_HEADER])


def deployment(server: ServerProcess, region: str, model: str) -> dict[str, Any]:
    status = httpx.get(server.url + "/_outcrop/routing").json()
    return next(d for d in status["deployments"] if d["region"] == region and d["model"] == model)


def converse_many(runtime: Any, model_id: str, n: int) -> list[dict[str, Any] | ClientError]:
    """``n`` Converse calls at once (threads released together)."""
    barrier = threading.Barrier(n)
    out: list[dict[str, Any] | ClientError] = [None] * n  # type: ignore[list-item]

    def one(i: int) -> None:
        barrier.wait()
        try:
            out[i] = runtime.converse(modelId=model_id, messages=USER_HELLO)
        except ClientError as e:
            out[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_the_serving_region_is_returned_and_is_the_source_region_when_it_has_room(runtime):
    r = runtime.converse(modelId=NOVA_LITE, messages=USER_HELLO)
    assert served_in(r) == "us-east-1"
    direct = runtime.invoke_model(modelId="amazon.nova-lite-v1:0", body=b'{"messages": [{"role": "user", '
                                b'"content": [{"text": "hi"}]}]}')
    assert served_in(direct) == "us-east-1"  # a direct foundation-model call stays in the source Region


def test_one_region_in_outage_every_call_succeeds_elsewhere(server, runtime, chaos):
    httpx.post(chaos, json={"region": "us-east-1", "fault": "outage"})
    regions: Counter[str] = Counter()
    for _ in range(10):
        r = runtime.converse(modelId=NOVA_LITE, messages=USER_HELLO)
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
        regions[served_in(r)] += 1
        s = runtime.converse_stream(modelId=NOVA_LITE, messages=USER_HELLO)
        assert [e for e in s["stream"] if "messageStop" in e]
        regions[served_in(s)] += 1
    assert "us-east-1" not in regions and set(regions) <= REGIONS


def test_every_region_out_is_a_quick_aws_error_after_one_try_each(server, runtime, chaos):
    httpx.post(chaos, json={"region": "*", "fault": "outage"})
    with pytest.raises(ClientError) as e:
        runtime.converse(modelId=NOVA_PREMIER, messages=USER_HELLO)
    assert e.value.response["Error"]["Code"] == "ServiceUnavailableException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    for region in REGIONS:
        assert deployment(server, region, "amazon.nova-premier-v1:0")["attempts"] == {"failure": 1}
    httpx.delete(chaos)
    httpx.post(chaos, json={"region": "us-east-1", "fault": "outage"})
    httpx.post(chaos, json={"region": "us-e*", "fault": "throttle"})
    httpx.post(chaos, json={"region": "us-west-2", "fault": "throttle"})
    with pytest.raises(ClientError) as e:  # mixed failures: Bedrock's "no Region could serve it"
        runtime.converse(modelId=NOVA_PREMIER, messages=USER_HELLO)
    assert e.value.response["Error"] == {"Code": "ThrottlingException",
                                         "Message": "Too many requests, please wait before trying again."}
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429


def test_spills_over_when_the_source_region_is_full_then_throttles(server, runtime):
    results = converse_many(runtime, NOVA_MICRO, 6)
    assert all(isinstance(r, dict) for r in results)
    regions = Counter(served_in(r) for r in results if isinstance(r, dict))
    assert regions == {"us-east-1": 2, "us-west-2": 2, "us-east-2": 2}
    results = converse_many(runtime, NOVA_MICRO, 8)
    errors = [r for r in results if isinstance(r, ClientError)]
    assert len(errors) == 2
    for e in errors:
        assert e.response["Error"]["Code"] == "ThrottlingException"
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 429


def test_breaker_opens_on_consecutive_failures_and_recovers_after_cooldown(server, runtime, chaos):
    rule = httpx.post(chaos, json={"region": "us-east-1", "fault": "error"}).json()
    for _ in range(3):
        assert served_in(runtime.converse(modelId=NOVA_PRO, messages=USER_HELLO)) != "us-east-1"
    east = deployment(server, "us-east-1", "amazon.nova-pro-v1:0")
    assert east["breaker"] == "open" and east["attempts"] == {"failure": 3}
    metrics = httpx.get(server.url + "/metrics").text
    assert ('outcrop_routing_breaker_state{deployment="builtin",model="amazon.nova-pro-v1:0",'
            'region="us-east-1"} 2.0') in metrics
    # Open: skipped, so no more failed attempts there.
    for _ in range(3):
        assert served_in(runtime.converse(modelId=NOVA_PRO, messages=USER_HELLO)) != "us-east-1"
    assert deployment(server, "us-east-1", "amazon.nova-pro-v1:0")["attempts"] == {"failure": 3}
    httpx.delete(f"{chaos}/{rule['id']}")
    time.sleep(0.9)  # the cooldown: the next call probes the source Region again
    assert served_in(runtime.converse(modelId=NOVA_PRO, messages=USER_HELLO)) == "us-east-1"
    east = deployment(server, "us-east-1", "amazon.nova-pro-v1:0")
    assert east["breaker"] == "closed" and east["attempts"] == {"failure": 3, "success": 1}


def test_stream_fails_over_before_its_first_byte(server, runtime, chaos):
    httpx.post(chaos, json={"region": "us-east-1", "fault": "throttle"})
    s = runtime.converse_stream(modelId=SCOUT, messages=USER_HELLO)
    assert served_in(s) != "us-east-1"
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in s["stream"] if "contentBlockDelta" in e)
    assert text == "echo: Hello there"


def test_stream_is_never_retried_after_its_first_byte(server, runtime, fake_openai):
    before = len(httpx.get(fake_openai + "/requests").json())
    s = runtime.converse_stream(modelId=SCOUT, messages=[{"role": "user", "content": [{"text": "DROP now"}]}])
    with pytest.raises(EventStreamError):
        for _ in s["stream"]:
            pass
    assert len(httpx.get(fake_openai + "/requests").json()) == before + 1


def test_a_validation_error_is_not_retried(server, runtime):
    before = _BadRequest.calls
    with pytest.raises(ClientError) as e:
        runtime.converse(modelId=MAVERICK, messages=USER_HELLO)
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert _BadRequest.calls == before + 1
    east = deployment(server, "us-east-1", "meta.llama4-maverick-17b-instruct-v1:0")
    assert east["breaker"] == "closed" and east["attempts"] == {"client_error": 1}


def test_routing_state_and_metrics_are_published(server, runtime):
    # Deployments appear once used: use the one inspected below, whatever ran before in this module.
    runtime.converse(modelId=NOVA_MICRO, messages=USER_HELLO)
    status = httpx.get(server.url + "/_outcrop/routing").json()
    assert status["strategy"] == "source-first" and status["breakerFailures"] == 3
    micro = deployment(server, "us-east-1", "amazon.nova-micro-v1:0")
    assert micro["maxConcurrency"] == 2 and micro["outstanding"] == 0
    metrics = httpx.get(server.url + "/metrics").text
    for name in ("outcrop_routing_outstanding_requests", "outcrop_routing_attempts_total",
                 "outcrop_routing_failovers_total", "outcrop_routing_rejections_total"):
        assert name in metrics
