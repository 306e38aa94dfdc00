"""Hostile input against a strict server: each gets an AWS-shaped 4xx, the server stays up and consistent."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials

from tests.conftest import ServerProcess, running_server

HAIKU_FM = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("hostile"), args=["--auth", "strict"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def key(strict: ServerProcess) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "outcrop", "keys", "create", "--account", "333344445555",
                          "--database", strict.database_url], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def signed(srv: ServerProcess, key: dict[str, str], method: str, path: str, body: bytes = b"",
           headers: dict[str, str] | None = None) -> httpx.Response:
    request = AWSRequest(method=method, url=srv.url + path, data=body, headers=headers or {})
    SigV4Auth(Credentials(key["accessKeyId"], key["secretAccessKey"]), "bedrock", "us-east-1").add_auth(request)
    return httpx.request(method, srv.url + path, content=body, headers=dict(request.headers.items()), timeout=30)


def assert_aws_error(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert "x-amzn-errortype" in r.headers and "message" in r.json()
    if code is not None:
        assert r.headers["x-amzn-errortype"] == code


def healthy(srv: ServerProcess, key: dict[str, str]) -> None:
    assert httpx.get(srv.url + "/_outcrop/health").status_code == 200
    assert signed(srv, key, "GET", "/inference-profiles").status_code == 200


def test_unsigned_large_body_is_refused_before_it_is_read(strict, key):
    with socket.create_connection(("127.0.0.1", strict.port), timeout=10) as s:
        s.sendall(b"POST /inference-profiles HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000000000\r\n\r\n{")
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 403") and b"AccessDeniedException" in reply
    healthy(strict, key)


def test_body_over_the_limit_is_a_validation_error(strict, key):
    r = signed(strict, key, "POST", "/inference-profiles", b"{" + b" " * (26 * 1024 * 1024) + b"}",
               {"content-type": "application/json"})
    assert r.status_code in (400, 413)
    healthy(strict, key)


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"inferenceProfileName": "' + b"\xff\xfe" + b'"}',
    b'{"inferenceProfileName": 1e999999}',
    b"\x00\x01\x02",
    b'{"a": "' + b"x" * 1_000_000 + b'"}',
])
def test_malformed_json_is_a_4xx(strict, key, body):
    r = signed(strict, key, "POST", "/inference-profiles", body, {"content-type": "application/json"})
    assert_aws_error(r, 400)
    healthy(strict, key)


@pytest.mark.parametrize("name", [
    "x'; DROP TABLE inference_profiles; --",
    'x" OR "1"="1',
    "../../etc/passwd",
    "a\x00b",
    "名前",
])
def test_hostile_profile_names_are_validation_errors(strict, key, name):
    body = json.dumps({"inferenceProfileName": name, "modelSource": {"copyFrom": HAIKU_FM}}).encode()
    r = signed(strict, key, "POST", "/inference-profiles", body, {"content-type": "application/json"})
    assert_aws_error(r, 400, "ValidationException")
    healthy(strict, key)


@pytest.mark.parametrize("value", ["'; DELETE FROM access_keys; --", "%' OR 1=1 --", "\\x00"])
def test_sql_metacharacters_in_descriptions_and_tags_are_stored_verbatim(strict, key, value):
    bedrock = boto3.client("bedrock", region_name="us-east-1", endpoint_url=strict.url,
                           aws_access_key_id=key["accessKeyId"], aws_secret_access_key=key["secretAccessKey"],
                           config=BotoConfig(retries={"max_attempts": 1}, parameter_validation=False))
    name = f"sql{abs(hash(value)) % 10**8}"
    try:
        arn = bedrock.create_inference_profile(inferenceProfileName=name, description=value,
                                               modelSource={"copyFrom": HAIKU_FM},
                                               tags=[{"key": "k", "value": value}])["inferenceProfileArn"]
    except bedrock.exceptions.ValidationException:
        healthy(strict, key)  # refused by the model's patterns: also fine
        return
    assert bedrock.get_inference_profile(inferenceProfileIdentifier=arn)["description"] == value
    assert bedrock.list_tags_for_resource(resourceARN=arn)["tags"] == [{"key": "k", "value": value}]
    healthy(strict, key)


@pytest.mark.parametrize("path", [
    "/inference-profiles/..%2F..%2Fetc%2Fpasswd",
    "/inference-profiles/%2e%2e",
    "/inference-profiles/a%00b",
    "/inference-profiles/" + "a" * 5000,
    "/inference-profiles/arn%3Aaws%3Abedrock%3Aus-east-1%3A999999999999%3Aapplication-inference-profile%2Fabcdabcdabcd",
])
def test_path_tricks_in_identifiers_are_4xx(strict, key, path):
    r = signed(strict, key, "GET", path)
    assert 400 <= r.status_code < 500, r.text
    assert "x-amzn-errortype" in r.headers
    healthy(strict, key)


def test_oversized_headers_are_refused_and_the_server_stays_up(strict, key):
    try:
        r = httpx.get(strict.url + "/inference-profiles", headers={"x-big": "a" * 200_000}, timeout=10)
        assert 400 <= r.status_code < 500
    except httpx.HTTPError:
        pass  # the server may close the connection instead
    healthy(strict, key)


def test_slow_client_does_not_block_others(strict, key):
    with socket.create_connection(("127.0.0.1", strict.port), timeout=10) as slow:
        slow.sendall(b"GET /inference-profiles HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
        start = time.monotonic()
        healthy(strict, key)
        assert time.monotonic() - start < 10


def test_garbage_authorization_headers_are_auth_errors(strict, key):
    for value in ["AWS4-HMAC-SHA256", "AWS4-HMAC-SHA256 Credential=" + "A" * 10000, "Bearer", "Bearer " + "x" * 20000,
                  "AWS4-HMAC-SHA256 Credential=AKID/2026/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=zz"]:
        r = httpx.get(strict.url + "/inference-profiles", headers={"authorization": value, "x-amz-date": "20260101T000000Z"})
        assert r.status_code == 403, (value[:40], r.text)
        assert r.headers["x-amzn-errortype"] in ("IncompleteSignatureException", "InvalidSignatureException",
                                                  "UnrecognizedClientException", "AccessDeniedException")
    healthy(strict, key)
