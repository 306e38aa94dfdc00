"""SigV4 verification against requests signed by botocore itself, on the raw path and query."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials

from outcrop.errors import IncompleteSignature, InvalidSignature, MissingAuthenticationToken
from outcrop.wire.sigv4 import SIGNATURE_MISMATCH, RawRequest, SigV4Verifier

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abcd1234efgh"


class _Captured(Exception):
    pass


def _raw(prepared: Any) -> RawRequest:
    parts = urlsplit(prepared.url)
    headers = [(k.lower(), v.decode() if isinstance(v, bytes) else v) for k, v in prepared.headers.items()]
    headers.append(("host", parts.netloc))  # added by the HTTP client, signed by botocore
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode()
    return RawRequest(prepared.method, parts.path, parts.query, headers, body)


def signed_by_boto3(service: str, call: str, **params: Any) -> RawRequest:
    """The request a real boto3 client sends for ``call``, captured before it leaves the process."""
    client = boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=BotoConfig(retries={"max_attempts": 1}),
    )
    captured: list[RawRequest] = []

    def capture(request: Any, **_: Any) -> AWSResponse:
        captured.append(_raw(request))
        raise _Captured

    client.meta.events.register("before-send", capture)
    with pytest.raises(_Captured):
        getattr(client, call)(**params)
    return captured[0]


def verify(request: RawRequest, secret: str = SECRET_KEY, **kwargs: Any) -> None:
    verifier = SigV4Verifier(**kwargs)
    credential = verifier.check(request)
    verifier.verify_signature(request, credential, secret)


def with_header(request: RawRequest, name: str, value: str) -> RawRequest:
    headers = [(k, v) for k, v in request.headers if k != name] + [(name, value)]
    return RawRequest(request.method, request.raw_path, request.raw_query, headers, request.body)


def test_accepts_get_with_percent_encoded_arn_path():
    request = signed_by_boto3("bedrock", "get_inference_profile", inferenceProfileIdentifier=PROFILE_ARN)
    assert "%3A" in request.raw_path and "%2F" in request.raw_path
    verify(request)


def test_rejects_the_decoded_path():
    request = signed_by_boto3("bedrock", "get_inference_profile", inferenceProfileIdentifier=PROFILE_ARN)
    decoded = RawRequest(request.method, f"/inference-profiles/{PROFILE_ARN}", "", request.headers, b"")
    with pytest.raises(InvalidSignature):
        verify(decoded)


def test_accepts_query_with_opaque_next_token():
    request = signed_by_boto3("bedrock", "list_inference_profiles", maxResults=2, nextToken="a/b+c=N")
    assert "nextToken=a%2Fb%2Bc%3DN" in request.raw_query
    verify(request)


def test_rejects_a_changed_query():
    request = signed_by_boto3("bedrock", "list_inference_profiles", maxResults=2, nextToken="a/b+c=N")
    changed = RawRequest(request.method, request.raw_path, request.raw_query.replace("2", "3"), request.headers, b"")
    with pytest.raises(InvalidSignature, match="does not match the signature"):
        verify(changed)


def test_accepts_post_with_body():
    request = signed_by_boto3(
        "bedrock-runtime", "converse", modelId=PROFILE_ARN, messages=[{"role": "user", "content": [{"text": "hé"}]}]
    )
    assert request.method == "POST" and request.body
    verify(request)


def test_rejects_a_tampered_body():
    request = signed_by_boto3(
        "bedrock-runtime", "converse", modelId=PROFILE_ARN, messages=[{"role": "user", "content": [{"text": "hi"}]}]
    )
    tampered = RawRequest(request.method, request.raw_path, request.raw_query, request.headers, request.body + b" ")
    with pytest.raises(InvalidSignature):
        verify(tampered)


def test_rejects_a_tampered_path():
    request = signed_by_boto3("bedrock", "get_inference_profile", inferenceProfileIdentifier=PROFILE_ARN)
    tampered = RawRequest(request.method, request.raw_path.replace("abcd", "abce"), "", request.headers, b"")
    with pytest.raises(InvalidSignature):
        verify(tampered)


def test_rejects_a_tampered_signed_header():
    request = signed_by_boto3(
        "bedrock-runtime", "converse", modelId=PROFILE_ARN, messages=[{"role": "user", "content": [{"text": "hi"}]}]
    )
    with pytest.raises(InvalidSignature):
        verify(with_header(request, "content-type", "text/plain"))


def test_ignores_unsigned_headers():
    request = signed_by_boto3("bedrock", "get_inference_profile", inferenceProfileIdentifier=PROFILE_ARN)
    verify(with_header(request, "user-agent", "something else"))


def test_rejects_the_wrong_secret():
    request = signed_by_boto3("bedrock", "list_inference_profiles")
    with pytest.raises(InvalidSignature) as e:
        verify(request, secret="not-the-secret")
    assert e.value.message == SIGNATURE_MISMATCH


def test_refuses_a_request_without_authorization():
    request = signed_by_boto3("bedrock", "list_inference_profiles")
    unsigned = RawRequest("GET", "/inference-profiles", "", [(k, v) for k, v in request.headers if k != "authorization"], b"")
    with pytest.raises(MissingAuthenticationToken, match="Missing Authentication Token"):
        verify(unsigned)


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic dXNlcjpwYXNz",
        "AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/bedrock, SignedHeaders=host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/bedrock/aws4_request, SignedHeaders=x-amz-date;host, "
        "Signature=" + "0" * 64,
    ],
)
def test_refuses_a_malformed_authorization_header(authorization):
    request = with_header(signed_by_boto3("bedrock", "list_inference_profiles"), "authorization", authorization)
    with pytest.raises(IncompleteSignature):
        SigV4Verifier().check(request)


def _resigned(request: RawRequest, *, scope_date: str | None = None, region: str = "us-east-1",
              service: str = "bedrock") -> RawRequest:
    amz_date = request.header("x-amz-date") or ""
    date = scope_date or amz_date[:8]
    value = (request.header("authorization") or "").replace(
        f"/{amz_date[:8]}/us-east-1/bedrock/", f"/{date}/{region}/{service}/"
    )
    return with_header(request, "authorization", value)


def test_refuses_a_scope_for_another_service():
    request = _resigned(signed_by_boto3("bedrock", "list_inference_profiles"), service="s3")
    with pytest.raises(InvalidSignature, match="Credential should be scoped to correct service: 'bedrock'"):
        SigV4Verifier().check(request)


def test_refuses_a_scope_date_other_than_the_signing_date():
    request = _resigned(signed_by_boto3("bedrock", "list_inference_profiles"), scope_date="20200101")
    with pytest.raises(InvalidSignature, match="Date in Credential scope does not match"):
        SigV4Verifier().check(request)


def test_refuses_a_region_the_server_does_not_serve():
    request = _resigned(signed_by_boto3("bedrock", "list_inference_profiles"), region="xx-nowhere-9")
    with pytest.raises(InvalidSignature, match="valid region"):
        SigV4Verifier(regions={"us-east-1"}).check(request)


def test_region_comes_from_the_credential_scope():
    client_request = signed_by_boto3("bedrock", "list_inference_profiles")
    assert SigV4Verifier().check(client_request).region == "us-east-1"


def _signed_at(request: RawRequest) -> float:
    return dt.datetime.strptime(request.header("x-amz-date") or "", "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC).timestamp()


def test_refuses_a_request_signed_more_than_five_minutes_ago():
    request = signed_by_boto3("bedrock", "list_inference_profiles")
    at = _signed_at(request)
    SigV4Verifier(clock=lambda: at + 299).check(request)
    with pytest.raises(InvalidSignature) as e:
        SigV4Verifier(clock=lambda: at + 301).check(request)
    amz_date = request.header("x-amz-date")
    now = dt.datetime.fromtimestamp(at + 301, dt.UTC)
    expected = (
        f"Signature expired: {amz_date} is now earlier than {(now - dt.timedelta(minutes=5)):%Y%m%dT%H%M%SZ} "
        f"({now:%Y%m%dT%H%M%SZ} - 5 min.)"
    )
    assert e.value.message == expected


def test_refuses_a_request_signed_more_than_five_minutes_ahead():
    request = signed_by_boto3("bedrock", "list_inference_profiles")
    at = _signed_at(request)
    SigV4Verifier(clock=lambda: at - 299).check(request)
    with pytest.raises(InvalidSignature, match=r"Signature not yet current: .* is still later than .* \+ 5 min\.\)"):
        SigV4Verifier(clock=lambda: at - 301).check(request)


class _JsHttp2Signer(SigV4Auth):
    """Signs as the JS SDK v3 does over HTTP/2: ``:authority`` in place of ``host``, body hash sent."""

    def headers_to_sign(self, request: AWSRequest) -> Any:
        headers = super().headers_to_sign(request)
        del headers["host"]
        return headers


def _js_http2_request(body: bytes) -> tuple[AWSRequest, RawRequest]:
    path = "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabcd1234efgh/converse"
    request = AWSRequest(
        method="POST",
        url="http://127.0.0.1:8643" + path,
        data=body,
        headers={
            ":authority": "127.0.0.1:8643",
            "content-type": "application/json",
            "x-amz-content-sha256": hashlib.sha256(body).hexdigest(),
            "amz-sdk-invocation-id": "5b1f6a3c-0000-4000-8000-000000000000",
            "x-amz-user-agent": "aws-sdk-js/3.1163.0",
        },
    )
    _JsHttp2Signer(Credentials(ACCESS_KEY, SECRET_KEY), "bedrock", "us-east-1").add_auth(request)
    assert "SignedHeaders=:authority;" in request.headers["Authorization"]
    # Over HTTP/2 the server sees the authority as a pseudo-header; ASGI servers pass it as ``host``.
    headers = [(k.lower(), v) for k, v in request.headers.items() if k != ":authority"]
    headers.append(("host", "127.0.0.1:8643"))
    return request, RawRequest("POST", path, "", headers, body)


def test_accepts_js_http2_request_signing_authority():
    _, raw = _js_http2_request(b'{"messages":[]}')
    verify(raw)


def test_rejects_js_http2_request_for_another_authority():
    _, raw = _js_http2_request(b'{"messages":[]}')
    with pytest.raises(InvalidSignature):
        verify(with_header(raw, "host", "evil.example:8643"))


def test_refuses_a_content_hash_that_is_not_the_body_hash():
    _, raw = _js_http2_request(b'{"messages":[]}')
    forged = RawRequest(raw.method, raw.raw_path, raw.raw_query, raw.headers, b'{"messages":[1]}')
    with pytest.raises(InvalidSignature, match="x-amz-content-sha256"):
        SigV4Verifier().check(forged)


def test_refuses_unsigned_payload():
    _, raw = _js_http2_request(b'{"messages":[]}')
    with pytest.raises(InvalidSignature, match="x-amz-content-sha256"):
        SigV4Verifier().check(with_header(raw, "x-amz-content-sha256", "UNSIGNED-PAYLOAD"))


def test_refuses_a_signed_header_that_was_not_sent():
    request = signed_by_boto3(
        "bedrock-runtime", "converse", modelId=PROFILE_ARN, messages=[{"role": "user", "content": [{"text": "hi"}]}]
    )
    without = RawRequest(request.method, request.raw_path, request.raw_query,
                         [(k, v) for k, v in request.headers if k != "content-type"], request.body)
    with pytest.raises(InvalidSignature, match="content-type"):
        SigV4Verifier().check(without)


def test_repeated_headers_are_joined_as_sigv4_canonicalises_them():
    request = AWSRequest(method="GET", url="http://h/inference-profiles", headers={"x-custom": "a,b"})
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "bedrock", "us-east-1").add_auth(request)
    headers = [(k.lower(), v) for k, v in request.headers.items() if k.lower() != "x-custom"]
    headers += [("x-custom", "a"), ("x-custom", "b"), ("host", "h")]
    verify(RawRequest("GET", "/inference-profiles", "", headers, b""))
