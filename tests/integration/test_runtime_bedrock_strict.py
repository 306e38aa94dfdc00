"""The bedrock backend against an upstream that verifies every signature (``outcrop serve --auth strict``).

The front re-signs each call with its deployment's own credentials: SigV4 with a key issued by the
upstream (``outcrop keys create``), or a Bedrock API key (``outcrop api-keys create``). A wrong secret
is refused upstream and reaches the caller as AccessDeniedException, saying it is outcrop's credentials.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ServerProcess, running_server
from tests.integration.runtime_helpers import HAIKU, US_HAIKU, USER_HELLO, anthropic_body, start_server

TITAN_EMBED = "amazon.titan-embed-text-v2:0"
NOVA_MICRO = "amazon.nova-micro-v1:0"


def _issue(upstream: ServerProcess, kind: str) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "outcrop", kind, "create", "--account", "123456789012",
                          "--database", upstream.database_url], check=True, capture_output=True, text=True,
                         timeout=60)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("strict-upstream"), args=["--auth", "strict"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory, upstream: ServerProcess) -> Iterator[ServerProcess]:
    key, api_key = _issue(upstream, "keys"), _issue(upstream, "api-keys")["apiKey"]
    config = f"""
[[deployments]]
model = "anthropic.claude-3-haiku-*"
backend = "bedrock"
url = "{upstream.url}"
upstream_region = "us-west-2"
backend_model = "{US_HAIKU}"
aws_access_key_id = "{key['accessKeyId']}"
aws_secret_access_key = "{key['secretAccessKey']}"

[[deployments]]
model = "{TITAN_EMBED}"
backend = "bedrock"
url = "{upstream.url}"
api_key = "{api_key}"

[[deployments]]
model = "{NOVA_MICRO}"
backend = "bedrock"
url = "{upstream.url}"
aws_access_key_id = "{key['accessKeyId']}"
aws_secret_access_key = "not-the-secret"
"""
    srv = start_server(tmp_path_factory.mktemp("strict-front"), config)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def runtime(front: ServerProcess) -> Any:
    return front.client("bedrock-runtime")


def test_sigv4_resigned_calls_and_streams_are_accepted_upstream(runtime):
    r = runtime.converse(modelId=HAIKU, messages=USER_HELLO)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200 and r["stopReason"] == "end_turn"
    events = list(runtime.converse_stream(modelId=HAIKU, messages=USER_HELLO)["stream"])
    assert "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e) \
        == r["output"]["message"]["content"][0]["text"]
    chunks = list(runtime.invoke_model_with_response_stream(modelId=HAIKU, body=anthropic_body())["body"])
    assert json.loads(chunks[-1]["chunk"]["bytes"])["type"] == "message_stop"


def test_api_key_is_accepted_upstream(runtime):
    r = runtime.invoke_model(modelId=TITAN_EMBED, body=json.dumps({"inputText": "hi", "dimensions": 256}))
    assert len(json.loads(r["body"].read())["embedding"]) == 256


def test_upstream_refusing_outcrops_credentials_is_access_denied(runtime):
    with pytest.raises(ClientError) as e:
        runtime.converse(modelId=NOVA_MICRO, messages=USER_HELLO)
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "upstream Bedrock endpoint refused outcrop's credentials" in e.value.response["Error"]["Message"]
