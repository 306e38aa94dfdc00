"""The runtime on PostgreSQL: every operation, one body per family, streams, profiles and chaos rules.

The runtime's own tests run on SQLite (the embedded default); here one server on a fresh PostgreSQL
database answers the same calls, so profile resolution and the chaos rules are read from PostgreSQL.
Skipped, saying why, where no PostgreSQL server runs on 127.0.0.1:5432.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.conftest import ServerProcess, fresh_pg_database, pg_skip_reason
from tests.integration.runtime_helpers import HAIKU, HAIKU_PROFILE_ARN, US_HAIKU, USER_HELLO, anthropic_body
from tests.integration.test_runtime_families import FAMILIES

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    reason = pg_skip_reason()
    if reason:
        pytest.skip(reason)
    srv = ServerProcess(database_url=fresh_pg_database(), data_dir=tmp_path_factory.mktemp("runtime-pg")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def runtime(server: ServerProcess) -> Any:
    return server.client("bedrock-runtime")


@pytest.fixture(scope="module")
def app_arn(server: ServerProcess) -> str:
    return server.client("bedrock").create_inference_profile(
        inferenceProfileName="pg-app", modelSource={"copyFrom": HAIKU_PROFILE_ARN})["inferenceProfileArn"]


def test_converse_and_its_stream_through_an_application_profile(runtime, app_arn):
    r = runtime.converse(modelId=app_arn, messages=USER_HELLO)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200 and r["stopReason"] == "end_turn"
    events = list(runtime.converse_stream(modelId=app_arn, messages=USER_HELLO)["stream"])
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == r["output"]["message"]["content"][0]["text"]
    assert events[-1]["metadata"]["usage"] == r["usage"]


def test_deleted_application_profile_is_an_invalid_model_identifier(server, runtime):
    bedrock = server.client("bedrock")
    arn = bedrock.create_inference_profile(inferenceProfileName="pg-gone",
                                           modelSource={"copyFrom": HAIKU_PROFILE_ARN})["inferenceProfileArn"]
    bedrock.delete_inference_profile(inferenceProfileIdentifier=arn)
    with pytest.raises(ClientError) as e:
        runtime.converse(modelId=arn, messages=USER_HELLO)
    assert e.value.response["Error"]["Message"] == "The provided model identifier is invalid."


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_invoke_stream_and_count_tokens(runtime, family):
    model_id, body, text_of, chunk_text = FAMILIES[family]
    r = runtime.invoke_model(modelId=model_id, body=json.dumps(body))
    text = text_of(json.loads(r["body"].read()))
    chunks = [json.loads(e["chunk"]["bytes"]) for e in
              runtime.invoke_model_with_response_stream(modelId=model_id, body=json.dumps(body))["body"]]
    assert text and "".join(chunk_text(c) for c in chunks) == text
    counted = runtime.count_tokens(modelId=model_id, input={"invokeModel": {"body": json.dumps(body)}})
    assert counted["inputTokens"] == int(r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-input-token-count"])


def test_invoke_model_through_an_application_profile_and_embeddings(runtime, app_arn):
    out = json.loads(runtime.invoke_model(modelId=app_arn, body=anthropic_body())["body"].read())
    assert out["content"][0]["text"]
    r = runtime.invoke_model(modelId="amazon.titan-embed-text-v2:0",
                             body=json.dumps({"inputText": "Hello there", "dimensions": 256}))
    assert len(json.loads(r["body"].read())["embedding"]) == 256


def test_chaos_rules_are_kept_in_postgresql(server, runtime):
    chaos = server.url + "/_outcrop/chaos"
    rule = httpx.post(chaos, json={"region": "*", "model": HAIKU, "fault": "throttle"}).json()
    try:
        with pytest.raises(ClientError) as e:
            runtime.converse(modelId=US_HAIKU, messages=USER_HELLO)
        assert e.value.response["Error"]["Code"] == "ThrottlingException"
        assert httpx.get(chaos).json()["rules"] == [rule]
    finally:
        assert httpx.delete(f"{chaos}/{rule['id']}").status_code == 200
    assert runtime.converse(modelId=US_HAIKU, messages=USER_HELLO)["stopReason"] == "end_turn"
