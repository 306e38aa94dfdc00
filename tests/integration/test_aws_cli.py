"""AWS CLI v1 (awscli 1.46.3, the ``aws`` next to this interpreter) against a real ``outcrop serve``.

Every CLI start costs 1-3 s, so the tests share work: four profiles for the pagination test are made
with boto3 and only the CLI calls that prove something go through ``aws``. The CLI always gets static
credentials from the environment and never a config file, a profile or the metadata service.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY = "AKIDEXAMPLE"  # the same static test credentials as tests/conftest.py
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
AWS = Path(sys.executable).with_name("aws")
US_HAIKU_PROFILE = "arn:aws:bedrock:us-east-1::inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
HAIKU_MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"

pytestmark = pytest.mark.skipif(not AWS.exists(), reason=f"AWS CLI v1 is not installed at {AWS}")


def cli_env(endpoint: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        AWS_MAX_ATTEMPTS="1",
    )
    if endpoint is not None:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env


def aws_run(*args: str, endpoint_url: str | None = None, env_endpoint: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run ``aws <args> --output json``; the endpoint comes from the flag or from the environment."""
    cmd = [str(AWS), *args, "--output", "json"]
    if endpoint_url is not None:
        cmd += ["--endpoint-url", endpoint_url]
    return subprocess.run(cmd, env=cli_env(env_endpoint), capture_output=True, text=True, timeout=90)


def aws_json(*args: str, **kwargs: Any) -> Any:
    proc = aws_run(*args, **kwargs)
    assert proc.returncode == 0, f"aws {' '.join(args)} exited {proc.returncode}: {proc.stderr}"
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def test_cli_create_with_tags_get_by_arn_and_id_tag_list_tags_delete_then_not_found(server_factory):
    url = server_factory().url
    created = aws_json(
        "bedrock", "create-inference-profile",
        "--inference-profile-name", "cli-one",
        "--description", "made by the AWS CLI",
        "--model-source", f"copyFrom={US_HAIKU_PROFILE}",
        "--tags", "key=team,value=cli", "key=cost-center,value=42",
        endpoint_url=url,
    )
    assert created["status"] == "ACTIVE"
    arn = created["inferenceProfileArn"]
    assert arn.startswith("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/")
    profile_id = arn.rsplit("/", 1)[1]

    by_arn = aws_json("bedrock", "get-inference-profile", "--inference-profile-identifier", arn, endpoint_url=url)
    by_id = aws_json("bedrock", "get-inference-profile", "--inference-profile-identifier", profile_id,
                     endpoint_url=url)
    assert by_arn == by_id
    assert by_arn["inferenceProfileArn"] == arn
    assert by_arn["inferenceProfileId"] == profile_id
    assert by_arn["inferenceProfileName"] == "cli-one"
    assert by_arn["description"] == "made by the AWS CLI"
    assert by_arn["type"] == "APPLICATION"
    assert by_arn["status"] == "ACTIVE"
    assert [m["modelArn"] for m in by_arn["models"]] == [
        f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU_MODEL_ID}",
        f"arn:aws:bedrock:us-west-2::foundation-model/{HAIKU_MODEL_ID}",
    ]

    aws_json("bedrock", "tag-resource", "--resource-arn", arn, "--tags", "key=env,value=test",
             "key=team,value=platform", endpoint_url=url)
    tags = aws_json("bedrock", "list-tags-for-resource", "--resource-arn", arn, endpoint_url=url)
    assert sorted((t["key"], t["value"]) for t in tags["tags"]) == [
        ("cost-center", "42"), ("env", "test"), ("team", "platform"),
    ]

    aws_json("bedrock", "delete-inference-profile", "--inference-profile-identifier", arn, endpoint_url=url)
    gone = aws_run("bedrock", "get-inference-profile", "--inference-profile-identifier", profile_id,
                   endpoint_url=url)
    assert gone.returncode != 0
    assert "(ResourceNotFoundException)" in gone.stderr, gone.stderr
    assert "GetInferenceProfile" in gone.stderr
    assert gone.stdout.strip() == ""


def test_cli_auto_pagination_returns_all_application_profiles_and_starting_token_resumes(server_factory):
    srv = server_factory()
    url = srv.url
    bedrock = srv.client("bedrock")
    expected = []
    for i in range(5):
        out = bedrock.create_inference_profile(inferenceProfileName=f"page-{i}",
                                               modelSource={"copyFrom": US_HAIKU_PROFILE})
        expected.append(out["inferenceProfileArn"])

    # --page-size 2 → maxResults=2: the CLI follows nextToken over 3 pages and merges them.
    everything = aws_json("bedrock", "list-inference-profiles", "--type-equals", "APPLICATION",
                          "--page-size", "2", endpoint_url=url)
    arns = [p["inferenceProfileArn"] for p in everything["inferenceProfileSummaries"]]
    assert sorted(arns) == sorted(expected)
    assert len(arns) == 5
    assert {p["type"] for p in everything["inferenceProfileSummaries"]} == {"APPLICATION"}
    assert "NextToken" not in everything and "nextToken" not in everything

    # --max-items 3 stops in the middle of the second page; the CLI's own NextToken resumes there.
    first = aws_json("bedrock", "list-inference-profiles", "--type-equals", "APPLICATION",
                     "--page-size", "2", "--max-items", "3", endpoint_url=url)
    head = [p["inferenceProfileArn"] for p in first["inferenceProfileSummaries"]]
    assert head == arns[:3]
    assert first.get("NextToken"), first
    # The CLI's token wraps the server's nextToken after page 1 and says to skip 1 item of page 2:
    # proof that the server really served pages of 2 rather than everything at once.
    cli_token = json.loads(base64.b64decode(first["NextToken"]))
    assert cli_token.get("boto_truncate_amount") == 1, cli_token
    assert cli_token.get("nextToken"), cli_token
    rest = aws_json("bedrock", "list-inference-profiles", "--type-equals", "APPLICATION",
                    "--page-size", "2", "--starting-token", first["NextToken"], endpoint_url=url)
    tail = [p["inferenceProfileArn"] for p in rest["inferenceProfileSummaries"]]
    assert tail == arns[3:]
    assert "NextToken" not in rest


def test_cli_uses_aws_endpoint_url_from_environment_without_endpoint_flag(server_factory):
    url = server_factory().url
    created = aws_json(
        "bedrock", "create-inference-profile",
        "--inference-profile-name", "from-env",
        "--model-source", f"copyFrom={US_HAIKU_PROFILE}",
        "--tags", "key=origin,value=env",
        env_endpoint=url,
    )
    profile_id = created["inferenceProfileArn"].rsplit("/", 1)[1]
    got = aws_json("bedrock", "get-inference-profile", "--inference-profile-identifier", profile_id,
                   env_endpoint=url)
    assert got["inferenceProfileArn"] == created["inferenceProfileArn"]
    assert got["inferenceProfileName"] == "from-env"
