"""``outcrop serve --auth strict`` with real clients: authentication, keys made by the CLI, policies, accounts.

One strict server (SQLite) serves the module; every test makes its own keys in its own accounts with
``outcrop keys create`` / ``outcrop api-keys create`` run against the server's database while it runs.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from tests.conftest import ServerProcess, running_server

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
HAIKU_FM = f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}"
US_HAIKU = f"us.{HAIKU}"
USER_HELLO = [{"role": "user", "content": [{"text": "hello"}]}]
_accounts = itertools.count(200000000000)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("strict"), args=["--auth", "strict"]) as srv:
        yield srv


def cli(srv: ServerProcess, *argv: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "outcrop", *argv, "--database", srv.database_url],
        check=True, capture_output=True, text=True, timeout=60,
    )
    return json.loads(out.stdout)


def new_key(srv: ServerProcess, account: str | None = None, policy: dict[str, Any] | None = None,
            tmp: Path | None = None) -> dict[str, str]:
    argv = ["keys", "create", "--account", account or str(next(_accounts))]
    if policy is not None:
        assert tmp is not None
        path = tmp / f"policy-{len(list(tmp.iterdir()))}.json"
        path.write_text(json.dumps(policy))
        argv += ["--policy", str(path), "--user-name", "alice"]
    return cli(srv, *argv)


def client(srv: ServerProcess, key: dict[str, str], service: str = "bedrock", region: str = "us-east-1",
           secret: str | None = None) -> Any:
    return boto3.client(
        service, region_name=region, endpoint_url=srv.url,
        aws_access_key_id=key["accessKeyId"], aws_secret_access_key=secret or key["secretAccessKey"],
        config=BotoConfig(retries={"max_attempts": 1}),
    )


def error_of(call: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as e:
        call()
    err = e.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Message"]


def create_profile(bedrock: Any, name: str, tags: list[dict[str, str]] | None = None) -> str:
    region = bedrock.meta.region_name
    kwargs: dict[str, Any] = {"inferenceProfileName": name,
                              "modelSource": {"copyFrom": HAIKU_FM.replace("us-east-1", region)}}
    if tags:
        kwargs["tags"] = tags
    return bedrock.create_inference_profile(**kwargs)["inferenceProfileArn"]


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


# ----------------------------------------------------------------------------------- authentication
def test_health_needs_no_credentials(strict):
    r = httpx.get(strict.url + "/_outcrop/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/inference-profiles"),
    ("GET", "/no/such/path"),
    ("GET", "/_outcrop/chaos"),
    ("GET", "/metrics"),
    ("POST", "/_outcrop/health"),
    ("POST", "/model/x/converse"),
])
def test_unsigned_requests_are_refused_everywhere(strict, method, path):
    r = httpx.request(method, strict.url + path, content=b"{}")
    assert r.status_code == 403
    # Bedrock's answer to a request with no Authorization header (karthink/gptel#1397,
    # anthropics/claude-code#44910, #44963, #45000).
    assert r.headers["x-amzn-errortype"] == "AccessDeniedException"
    assert r.json() == {"message": "Authorization header is missing"}


def test_unsigned_boto3_call_is_access_denied_for_its_missing_authorization(strict):
    for service, call in (("bedrock", lambda c: c.list_inference_profiles()),
                          ("bedrock-runtime", lambda c: c.converse(modelId=HAIKU, messages=USER_HELLO))):
        unsigned = boto3.client(service, region_name="us-east-1", endpoint_url=strict.url,
                                config=BotoConfig(signature_version=UNSIGNED, retries={"max_attempts": 1}))
        assert error_of(lambda u=unsigned, c=call: c(u)) == ("AccessDeniedException", 403,
                                                               "Authorization header is missing")


def test_unknown_key_is_unrecognized_client(strict):
    fake = {"accessKeyId": "AKIDEXAMPLE", "secretAccessKey": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
    code, status, message = error_of(client(strict, fake).list_inference_profiles)
    assert (code, status) == ("UnrecognizedClientException", 403)
    assert message == "The security token included in the request is invalid."


def test_wrong_secret_is_invalid_signature(strict):
    key = new_key(strict)
    code, status, message = error_of(client(strict, key, secret="x" * 40).list_inference_profiles)
    assert (code, status) == ("InvalidSignatureException", 403)
    assert message.startswith("The request signature we calculated does not match the signature you provided.")


def test_key_made_by_the_cli_works_and_deleting_it_refuses_it_at_once(strict):
    key = new_key(strict)
    bedrock = client(strict, key)
    assert bedrock.list_inference_profiles()["ResponseMetadata"]["HTTPStatusCode"] == 200
    arn = create_profile(bedrock, "mine")
    assert f":{key['account']}:" in arn
    cli(strict, "keys", "delete", key["accessKeyId"])
    assert error_of(bedrock.list_inference_profiles)[0] == "UnrecognizedClientException"


def test_runtime_calls_are_authenticated_too(strict):
    key = new_key(strict)
    runtime = client(strict, key, "bedrock-runtime")
    assert runtime.converse(modelId=US_HAIKU, messages=USER_HELLO)["stopReason"] == "end_turn"
    assert error_of(lambda: client(strict, key, "bedrock-runtime", secret="y" * 40).converse(
        modelId=US_HAIKU, messages=USER_HELLO))[0] == "InvalidSignatureException"


def test_region_comes_from_the_signed_scope(strict):
    key = new_key(strict)
    west = client(strict, key, region="us-west-2")
    arn = create_profile(west, "west")
    assert arn.startswith("arn:aws:bedrock:us-west-2:")
    assert client(strict, key).list_inference_profiles(typeEquals="APPLICATION")["inferenceProfileSummaries"] == []


def test_unknown_region_in_scope_is_refused(strict):
    key = new_key(strict)
    code, status, message = error_of(client(strict, key, region="xx-nowhere-1").list_inference_profiles)
    assert (code, status) == ("InvalidSignatureException", 403) and "valid region" in message


# ------------------------------------------------------------------------------------------ bearer
def bearer(srv: ServerProcess, token: str, path: str = "/inference-profiles") -> httpx.Response:
    return httpx.get(srv.url + path, headers={"Authorization": f"Bearer {token}"})


def test_bearer_api_key_is_accepted_and_deleting_it_refuses_it(strict):
    account = str(next(_accounts))
    made = cli(strict, "api-keys", "create", "--account", account)
    assert set(made) >= {"apiKey", "account"} and made["account"] == account
    r = bearer(strict, made["apiKey"], "/inference-profiles?type=APPLICATION")
    assert r.status_code == 200 and r.json()["inferenceProfileSummaries"] == []
    listed = cli(strict, "api-keys", "list", "--account", account)
    assert made["apiKey"] not in json.dumps(listed)
    cli(strict, "api-keys", "delete", made["apiKeyId"])
    r = bearer(strict, made["apiKey"])
    assert r.status_code == 403 and r.headers["x-amzn-errortype"] == "UnrecognizedClientException"


def test_bearer_key_acts_in_its_account(strict):
    key = new_key(strict)
    arn = create_profile(client(strict, key), "bearer-sees-this")
    made = cli(strict, "api-keys", "create", "--account", key["account"])
    r = bearer(strict, made["apiKey"], "/inference-profiles?type=APPLICATION")
    assert [p["inferenceProfileArn"] for p in r.json()["inferenceProfileSummaries"]] == [arn]


@pytest.mark.parametrize(("token", "message"), [
    ("not-a-bedrock-key", "Invalid API Key format: Must start with pre-defined prefix"),
    ("ABSK" + "QmVkcm9ja0FQSUtleS1ub25lOng=", "Authentication failed: Please make sure your API Key is valid."),
])
def test_bad_bearer_keys_are_refused(strict, token, message):
    r = bearer(strict, token)
    assert r.status_code == 403 and r.headers["x-amzn-errortype"] == "UnrecognizedClientException"
    assert r.json()["message"] == message


def test_boto3_sends_the_bedrock_api_key_as_bearer(monkeypatch):
    """boto3 1.44.8 honours AWS_BEARER_TOKEN_BEDROCK for both Bedrock APIs, but only over HTTPS."""
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "ABSKexample")
    seen: list[str] = []

    def capture(request: Any, **_: Any) -> None:
        seen.append(request.headers["Authorization"].decode() if isinstance(request.headers["Authorization"], bytes)
                    else request.headers["Authorization"])
        raise RuntimeError("captured")

    for service in ("bedrock", "bedrock-runtime"):
        c = boto3.client(service, region_name="us-east-1", endpoint_url="https://127.0.0.1:9",
                         aws_access_key_id="a", aws_secret_access_key="b")
        c.meta.events.register("before-send", capture)
        with pytest.raises(RuntimeError):
            c.list_inference_profiles() if service == "bedrock" else c.converse(modelId=US_HAIKU, messages=USER_HELLO)
    assert seen == ["Bearer ABSKexample", "Bearer ABSKexample"]


# ----------------------------------------------------------------------------------------- policies
def test_policy_allows_only_what_it_names(strict, tmp_path):
    key = new_key(strict, policy=policy({"Effect": "Allow", "Action": "bedrock:List*", "Resource": "*"}), tmp=tmp_path)
    bedrock = client(strict, key)
    bedrock.list_inference_profiles()
    code, status, message = error_of(lambda: create_profile(bedrock, "nope"))
    assert (code, status) == ("AccessDeniedException", 403)
    assert message == (
        f"User: arn:aws:iam::{key['account']}:user/alice is not authorized to perform: "
        f"bedrock:CreateInferenceProfile on resource: arn:aws:bedrock:us-east-1:{key['account']}:"
        "application-inference-profile/* because no identity-based policy allows the "
        "bedrock:CreateInferenceProfile action"
    )


def test_explicit_deny_wins(strict, tmp_path):
    key = new_key(strict, policy=policy(
        {"Effect": "Allow", "Action": "bedrock:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "bedrock:DeleteInferenceProfile", "Resource": "*"},
    ), tmp=tmp_path)
    bedrock = client(strict, key)
    arn = create_profile(bedrock, "keep")
    code, _, message = error_of(lambda: bedrock.delete_inference_profile(inferenceProfileIdentifier=arn))
    assert code == "AccessDeniedException"
    assert message.endswith(f"on resource: {arn} with an explicit deny in an identity-based policy")
    assert bedrock.get_inference_profile(inferenceProfileIdentifier=arn)["inferenceProfileArn"] == arn


def test_a_deny_on_a_profile_holds_for_every_form_of_its_arn(strict, tmp_path):
    # Get, Delete and the tag operations accept an ARN with an empty account (and Get and Delete an empty
    # Region too): each is authorized as the profile's own ARN, so a Deny on that ARN is not stepped round.
    owner = new_key(strict)
    arn = create_profile(client(strict, owner), "guarded", [{"key": "team", "value": "red"}])
    region, account, profile_id = "us-east-1", owner["account"], arn.rsplit("/", 1)[1]
    key = new_key(strict, account=account, policy=policy(
        {"Effect": "Allow", "Action": "bedrock:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "bedrock:*", "Resource": arn},
    ), tmp=tmp_path)
    bedrock = client(strict, key)
    no_account = f"arn:aws:bedrock:{region}::application-inference-profile/{profile_id}"
    no_region = f"arn:aws:bedrock:::application-inference-profile/{profile_id}"
    for identifier in (arn, profile_id, no_account, no_region):
        code, _, message = error_of(lambda i=identifier: bedrock.get_inference_profile(inferenceProfileIdentifier=i))
        assert code == "AccessDeniedException" and f"on resource: {arn} with an explicit deny" in message
        assert error_of(lambda i=identifier: bedrock.delete_inference_profile(inferenceProfileIdentifier=i))[0] \
            == "AccessDeniedException"
    tags = [{"key": "team", "value": "blue"}]
    assert error_of(lambda: bedrock.tag_resource(resourceARN=no_account, tags=tags))[0] == "AccessDeniedException"
    assert error_of(lambda: bedrock.untag_resource(resourceARN=no_account, tagKeys=["team"]))[0] \
        == "AccessDeniedException"
    assert error_of(lambda: bedrock.list_tags_for_resource(resourceARN=no_account))[0] == "AccessDeniedException"
    # A resource-tag condition sees the profile's tags however it is named.
    reader = new_key(strict, account=account, policy=policy(
        {"Effect": "Allow", "Action": "bedrock:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "bedrock:*", "Resource": "*",
         "Condition": {"StringEquals": {"aws:ResourceTag/team": "red"}}},
    ), tmp=tmp_path)
    as_reader = client(strict, reader)
    assert error_of(lambda: as_reader.get_inference_profile(inferenceProfileIdentifier=no_account))[0] \
        == "AccessDeniedException"
    assert client(strict, owner).list_tags_for_resource(resourceARN=arn)["tags"] == [{"key": "team", "value": "red"}]
    assert client(strict, owner).get_inference_profile(inferenceProfileIdentifier=no_region)["inferenceProfileArn"] == arn


def test_request_tag_condition_on_create(strict, tmp_path):
    key = new_key(strict, policy=policy(
        {"Effect": "Allow", "Action": "bedrock:*", "Resource": "*",
         "Condition": {"StringEqualsIfExists": {"aws:RequestTag/team": "red"}}},
        {"Effect": "Deny", "Action": "bedrock:CreateInferenceProfile", "Resource": "*",
         "Condition": {"Null": {"aws:RequestTag/team": "true"}}},
    ), tmp=tmp_path)
    bedrock = client(strict, key)
    assert error_of(lambda: create_profile(bedrock, "untagged"))[0] == "AccessDeniedException"
    assert error_of(lambda: create_profile(bedrock, "blue", [{"key": "team", "value": "blue"}]))[0] == "AccessDeniedException"
    create_profile(bedrock, "red", [{"key": "team", "value": "red"}])


def test_resource_tag_condition_on_get(strict, tmp_path):
    owner = new_key(strict)
    bedrock = client(strict, owner)
    red = create_profile(bedrock, "red", [{"key": "team", "value": "red"}])
    blue = create_profile(bedrock, "blue", [{"key": "team", "value": "blue"}])
    reader = new_key(strict, account=owner["account"], policy=policy(
        {"Effect": "Allow", "Action": "bedrock:GetInferenceProfile", "Resource": "*",
         "Condition": {"StringEquals": {"aws:ResourceTag/team": "red"}}},
    ), tmp=tmp_path)
    as_reader = client(strict, reader)
    assert as_reader.get_inference_profile(inferenceProfileIdentifier=red)["inferenceProfileArn"] == red
    assert error_of(lambda: as_reader.get_inference_profile(inferenceProfileIdentifier=blue))[0] == "AccessDeniedException"


def test_tag_keys_condition_on_untag(strict, tmp_path):
    owner = new_key(strict)
    arn = create_profile(client(strict, owner), "tagged", [{"key": "team", "value": "red"}, {"key": "cost", "value": "1"}])
    tagger = new_key(strict, account=owner["account"], policy=policy(
        {"Effect": "Allow", "Action": ["bedrock:UntagResource", "bedrock:TagResource"], "Resource": arn,
         "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["cost"]}}},
    ), tmp=tmp_path)
    as_tagger = client(strict, tagger)
    assert error_of(lambda: as_tagger.untag_resource(resourceARN=arn, tagKeys=["team"]))[0] == "AccessDeniedException"
    as_tagger.untag_resource(resourceARN=arn, tagKeys=["cost"])


def test_requested_region_condition(strict, tmp_path):
    key = new_key(strict, policy=policy(
        {"Effect": "Allow", "Action": "bedrock:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "*", "Resource": "*",
         "Condition": {"StringNotEquals": {"aws:RequestedRegion": "us-east-1"}}},
    ), tmp=tmp_path)
    client(strict, key).list_inference_profiles()
    assert error_of(client(strict, key, region="us-west-2").list_inference_profiles)[0] == "AccessDeniedException"


def test_invocation_needs_permission_on_the_profile(strict, tmp_path):
    owner = new_key(strict)
    arn = create_profile(client(strict, owner), "invoke-me")
    invoker = new_key(strict, account=owner["account"], policy=policy(
        {"Effect": "Allow", "Action": "bedrock:InvokeModel*", "Resource": arn},
        {"Effect": "Allow", "Action": "bedrock:InvokeModel*", "Resource": "arn:aws:bedrock:*::foundation-model/*"},
    ), tmp=tmp_path)
    runtime = client(strict, invoker, "bedrock-runtime")
    assert runtime.converse(modelId=arn, messages=USER_HELLO)["stopReason"] == "end_turn"
    code, _, message = error_of(lambda: runtime.converse(modelId=US_HAIKU, messages=USER_HELLO))
    assert code == "AccessDeniedException"
    assert f"bedrock:InvokeModel on resource: arn:aws:bedrock:us-east-1:{owner['account']}:inference-profile/{US_HAIKU}" in message


def test_invocation_through_a_profile_needs_the_foundation_model_in_the_serving_region(strict, tmp_path):
    owner = new_key(strict)
    arn = create_profile(client(strict, owner), "needs-model")
    invoker = new_key(strict, account=owner["account"], policy=policy(
        {"Effect": "Allow", "Action": "bedrock:InvokeModel*", "Resource": arn},
    ), tmp=tmp_path)
    runtime = client(strict, invoker, "bedrock-runtime")
    code, status, message = error_of(lambda: runtime.converse(modelId=arn, messages=USER_HELLO))
    assert (code, status) == ("AccessDeniedException", 403)
    assert f"bedrock:InvokeModel on resource: arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}" in message


def test_inference_profile_arn_condition_limits_the_model_to_calls_through_the_profile(strict, tmp_path):
    owner = new_key(strict)
    arn = create_profile(client(strict, owner), "only-through-profile")
    invoker = new_key(strict, account=owner["account"], policy=policy(
        {"Effect": "Allow", "Action": "bedrock:InvokeModel*", "Resource": arn},
        {"Effect": "Allow", "Action": "bedrock:InvokeModel*", "Resource": "arn:aws:bedrock:*::foundation-model/*",
         "Condition": {"StringEquals": {"bedrock:InferenceProfileArn": arn}}},
    ), tmp=tmp_path)
    runtime = client(strict, invoker, "bedrock-runtime")
    assert runtime.converse(modelId=arn, messages=USER_HELLO)["stopReason"] == "end_turn"
    code, _, message = error_of(lambda: runtime.converse(modelId=HAIKU, messages=USER_HELLO))
    assert code == "AccessDeniedException"
    assert f"on resource: arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}" in message


def test_admin_endpoints_need_outcrop_admin(strict, tmp_path):
    key = new_key(strict, policy=policy({"Effect": "Allow", "Action": "bedrock:*", "Resource": "*"}), tmp=tmp_path)
    code, _, message = error_of(lambda: _signed_get(strict, key, "/_outcrop/chaos"))
    assert code == "AccessDeniedException" and "outcrop:Admin" in message


def test_a_key_without_a_policy_reads_its_usage_but_not_what_spans_every_account(strict, tmp_path):
    """Before: a key with no policy (everything in its own account) could set chaos rules that failed other
    accounts' calls, and read their profiles' figures in /metrics. The server-wide endpoints now need a
    policy that allows outcrop:Admin; /_outcrop/usage answers for the caller's account, so it stays open."""
    plain = new_key(strict)
    for path in ("/_outcrop/chaos", "/metrics", "/_outcrop/metrics", "/_outcrop/routing"):
        code, status, message = error_of(lambda p=path: _signed_get(strict, plain, p))
        assert (code, status) == ("AccessDeniedException", 403)
        assert "outcrop:Admin" in message and "spans every account" in message
    assert _signed_get(strict, plain, "/_outcrop/usage").status_code == 200
    admin = new_key(strict, policy=policy({"Effect": "Allow", "Action": "outcrop:Admin", "Resource": "*"}),
                    tmp=tmp_path)
    for path in ("/_outcrop/chaos", "/metrics", "/_outcrop/routing", "/_outcrop/usage"):
        assert _signed_get(strict, admin, path).status_code == 200


def _signed_get(srv: ServerProcess, key: dict[str, str], path: str) -> httpx.Response:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="GET", url=srv.url + path)
    SigV4Auth(Credentials(key["accessKeyId"], key["secretAccessKey"]), "bedrock", "us-east-1").add_auth(request)
    r = httpx.get(srv.url + path, headers=dict(request.headers.items()))
    if r.status_code >= 400:
        raise ClientError({"Error": {"Code": r.headers.get("x-amzn-errortype", ""), "Message": r.json()["message"]},
                           "ResponseMetadata": {"HTTPStatusCode": r.status_code}}, "GET")
    return r


# ----------------------------------------------------------------------------------------- accounts
def test_accounts_are_isolated(strict):
    a, b = new_key(strict), new_key(strict)
    arn = create_profile(client(strict, a), "shared-name")
    as_b = client(strict, b)
    assert as_b.list_inference_profiles(typeEquals="APPLICATION")["inferenceProfileSummaries"] == []
    code, status, _ = error_of(lambda: as_b.get_inference_profile(inferenceProfileIdentifier=arn))
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert error_of(lambda: as_b.delete_inference_profile(inferenceProfileIdentifier=arn))[0] == "ResourceNotFoundException"
    assert error_of(lambda: as_b.list_tags_for_resource(resourceARN=arn))[0] == "ResourceNotFoundException"
    create_profile(as_b, "shared-name")  # names are per account
    assert client(strict, a).get_inference_profile(inferenceProfileIdentifier=arn)["inferenceProfileArn"] == arn


# -------------------------------------------------------------------------------------------- h2c
def test_h2c_request_signing_authority_is_verified(strict):
    """The JS SDK v3 runtime client over h2c signs ``:authority`` (not ``host``) and the body hash."""
    import hashlib
    import shutil

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is needed to send h2c with chosen headers")
    key = new_key(strict)
    authority = strict.url.split("://", 1)[1]

    class JsHttp2Signer(SigV4Auth):
        def headers_to_sign(self, request: Any) -> Any:
            headers = super().headers_to_sign(request)
            del headers["host"]
            return headers

    def send(secret: str) -> tuple[int, str]:
        body = json.dumps({"messages": USER_HELLO}).encode()
        path = f"/model/{US_HAIKU.replace(':', '%3A')}/converse"
        request = AWSRequest(method="POST", url=strict.url + path, data=body, headers={
            ":authority": authority, "content-type": "application/json",
            "x-amz-content-sha256": hashlib.sha256(body).hexdigest(),
        })
        JsHttp2Signer(Credentials(key["accessKeyId"], secret), "bedrock", "us-east-1").add_auth(request)
        assert "SignedHeaders=:authority;" in request.headers["Authorization"]
        headers = [f"{k}: {v}" for k, v in request.headers.items() if k != ":authority"]
        argv = [curl, "-sS", "--http2-prior-knowledge", "--max-time", "20", "-X", "POST", "--data-binary", "@-",
                "-o", "-", "-w", "\n%{http_version} %{http_code}", strict.url + path]
        for h in headers:
            argv += ["-H", h]
        proc = subprocess.run(argv, input=body, capture_output=True, timeout=30)
        out, _, trailer = proc.stdout.rpartition(b"\n")
        version, code = trailer.decode().split()
        assert version == "2"
        return int(code), out.decode()

    assert send(key["secretAccessKey"])[0] == 200
    status, out = send("z" * 40)
    assert status == 403 and "does not match" in out


# ------------------------------------------------------------------------ presigned URLs, session tokens
def presigned_url(srv: ServerProcess, key: dict[str, str], path: str, expires: int = 300,
                  token: str | None = None) -> str:
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="GET", url=srv.url + path)
    SigV4QueryAuth(Credentials(key["accessKeyId"], key["secretAccessKey"], token), "bedrock", "us-east-1",
                   expires=expires).add_auth(request)
    return str(request.url)


def test_presigned_url_is_accepted_in_the_keys_account(strict):
    key = new_key(strict)
    arn = create_profile(client(strict, key), "presigned")
    url = presigned_url(strict, key, "/inference-profiles?type=APPLICATION")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=300" in url
    r = httpx.get(url)
    assert r.status_code == 200, r.text
    assert [p["inferenceProfileArn"] for p in r.json()["inferenceProfileSummaries"]] == [arn]


def test_presigned_url_with_a_wrong_signature_or_altered_query_is_refused(strict):
    key = new_key(strict)
    url = presigned_url(strict, key, "/inference-profiles?type=APPLICATION")
    wrong = url.rsplit("X-Amz-Signature=", 1)[0] + "X-Amz-Signature=" + "0" * 64
    r = httpx.get(wrong)
    assert r.status_code == 403 and r.headers["x-amzn-errortype"] == "InvalidSignatureException"
    r = httpx.get(url.replace("type=APPLICATION", "type=SYSTEM_DEFINED"))
    assert r.status_code == 403 and r.headers["x-amzn-errortype"] == "InvalidSignatureException"


def test_expired_presigned_url_is_refused(strict):
    import time

    key = new_key(strict)
    url = presigned_url(strict, key, "/inference-profiles", expires=1)
    time.sleep(2.2)
    r = httpx.get(url)
    assert r.status_code == 403 and r.headers["x-amzn-errortype"] == "InvalidSignatureException"
    assert "expired" in r.json()["message"]


@pytest.mark.parametrize("query", ["X-Amz-Signature=" + "0" * 64, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=x"])
def test_incomplete_presigned_url_is_incomplete_signature(strict, query):
    r = httpx.get(f"{strict.url}/inference-profiles?{query}")
    assert r.status_code == 403
    assert r.headers["x-amzn-errortype"] in ("IncompleteSignatureException", "AccessDeniedException")


def test_session_tokens_are_refused_with_a_clear_message(strict):
    key = new_key(strict)
    signer = boto3.client(
        "bedrock", region_name="us-east-1", endpoint_url=strict.url, aws_access_key_id=key["accessKeyId"],
        aws_secret_access_key=key["secretAccessKey"], aws_session_token="FwoGZXIvYXdzEXAMPLE",
        config=BotoConfig(retries={"max_attempts": 1}),
    )
    code, status, message = error_of(signer.list_inference_profiles)
    assert (code, status) == ("UnrecognizedClientException", 403)
    assert "X-Amz-Security-Token" in message and "outcrop keys create" in message
    r = httpx.get(presigned_url(strict, key, "/inference-profiles", token="FwoGZXIvYXdzEXAMPLE"))
    assert r.status_code == 403 and "temporary credentials" in r.json()["message"]
