"""Strict mode on PostgreSQL: the representative cases of ``test_auth_strict.py`` against a server whose
keys, policies and profiles live in PostgreSQL (skipped, saying why, where no PostgreSQL server runs).

Keys are made by ``outcrop keys create`` on the server's database while it runs, as in production.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from test_auth_strict import HAIKU_FM, cli, client, create_profile, error_of, new_key, policy

from tests.conftest import ServerProcess

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)]


@pytest.fixture
def strict_pg(server_factory: Callable[..., ServerProcess], database_url: str) -> ServerProcess:
    return server_factory(database_url, args=["--auth", "strict"])


def test_keys_from_the_cli_are_honoured_at_once_and_refused_once_deleted(strict_pg):
    key = new_key(strict_pg)
    bedrock = client(strict_pg, key)
    arn = create_profile(bedrock, "pg-mine")
    assert f":{key['account']}:" in arn
    assert bedrock.get_inference_profile(inferenceProfileIdentifier=arn)["inferenceProfileArn"] == arn
    cli(strict_pg, "keys", "delete", key["accessKeyId"])
    assert error_of(bedrock.list_inference_profiles)[:2] == ("UnrecognizedClientException", 403)


def test_api_key_from_the_cli_is_honoured_and_refused_once_deleted(strict_pg):
    made = cli(strict_pg, "api-keys", "create", "--account", "210000000001")
    r = httpx.get(strict_pg.url + "/inference-profiles", headers={"Authorization": f"Bearer {made['apiKey']}"})
    assert r.status_code == 200
    cli(strict_pg, "api-keys", "delete", made["apiKeyId"])
    r = httpx.get(strict_pg.url + "/inference-profiles", headers={"Authorization": f"Bearer {made['apiKey']}"})
    assert r.status_code == 403 and r.headers["x-amzn-errortype"] == "UnrecognizedClientException"


def test_policy_deny_wins_and_unlisted_actions_are_denied(strict_pg, tmp_path):
    key = new_key(strict_pg, policy=policy(
        {"Effect": "Allow", "Action": ["bedrock:*InferenceProfile*"], "Resource": "*"},
        {"Effect": "Deny", "Action": "bedrock:DeleteInferenceProfile", "Resource": "*"},
    ), tmp=tmp_path)
    bedrock = client(strict_pg, key)
    arn = create_profile(bedrock, "pg-keep")
    code, status, message = error_of(lambda: bedrock.delete_inference_profile(inferenceProfileIdentifier=arn))
    assert (code, status) == ("AccessDeniedException", 403)
    assert message.endswith(f"on resource: {arn} with an explicit deny in an identity-based policy")
    assert error_of(lambda: bedrock.list_tags_for_resource(resourceARN=arn))[0] == "AccessDeniedException"
    assert bedrock.get_inference_profile(inferenceProfileIdentifier=arn)["inferenceProfileArn"] == arn


def test_accounts_are_isolated(strict_pg):
    a, b = new_key(strict_pg), new_key(strict_pg)
    arn = create_profile(client(strict_pg, a), "pg-shared-name")
    as_b = client(strict_pg, b)
    assert as_b.list_inference_profiles(typeEquals="APPLICATION")["inferenceProfileSummaries"] == []
    assert error_of(lambda: as_b.get_inference_profile(inferenceProfileIdentifier=arn))[:2] == (
        "ResourceNotFoundException", 404)
    assert error_of(lambda: as_b.delete_inference_profile(inferenceProfileIdentifier=arn))[0] == "ResourceNotFoundException"
    assert error_of(lambda: as_b.untag_resource(resourceARN=arn, tagKeys=["x"]))[0] == "ResourceNotFoundException"
    runtime_b = client(strict_pg, b, "bedrock-runtime")
    code, status, message = error_of(lambda: runtime_b.converse(
        modelId=arn, messages=[{"role": "user", "content": [{"text": "hi"}]}]))
    assert (code, status, message) == ("ValidationException", 400, "The provided model identifier is invalid.")
    create_profile(as_b, "pg-shared-name")  # names are per account
    assert client(strict_pg, a).get_inference_profile(inferenceProfileIdentifier=arn)["inferenceProfileArn"] == arn
    assert HAIKU_FM in client(strict_pg, a).get_inference_profile(inferenceProfileIdentifier=arn)["models"][0]["modelArn"]
