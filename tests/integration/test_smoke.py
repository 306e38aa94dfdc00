"""The server starts, answers health, and serves the basic lifecycle of a profile to boto3."""

from __future__ import annotations

import httpx

US_HAIKU_PROFILE = "arn:aws:bedrock:us-east-1::inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"


def test_health_answers_ok(server):
    r = httpx.get(server.url + "/_outcrop/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_create_get_delete_round_trip(bedrock):
    created = bedrock.create_inference_profile(
        inferenceProfileName="round-trip", modelSource={"copyFrom": US_HAIKU_PROFILE}
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["status"] == "ACTIVE"
    got = bedrock.get_inference_profile(inferenceProfileIdentifier=created["inferenceProfileArn"])
    assert got["type"] == "APPLICATION"
    assert [m["modelArn"].split(":")[3] for m in got["models"]] == ["us-east-1", "us-west-2"]
    bedrock.delete_inference_profile(inferenceProfileIdentifier=got["inferenceProfileId"])
