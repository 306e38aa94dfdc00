"""AWS Signature Version 4, verified on the raw request as the client sent it.

The canonical request is rebuilt by ``botocore.auth.SigV4Auth`` itself, the same code that signs for
boto3, from:

* the **raw, still percent-encoded** path and query string (a decoded ARN path would canonicalise
  differently: every client encodes ``:`` and ``/`` inside an ARN label, and the signer encodes the
  path once more);
* **exactly** the headers named in ``SignedHeaders`` (botocore's own ``headers_to_sign`` drops some
  and adds ``host``), where ``:authority`` (the JS SDK over HTTP/2) is the request's authority;
* the body, whose SHA-256 must also equal ``x-amz-content-sha256`` when the client sends it, because
  botocore would otherwise trust that header.

Checks happen in two steps so that a server can refuse a malformed, mis-scoped or late request before
it looks the key up: ``SigV4Verifier.check`` (header syntax, credential scope, clock skew, body hash),
then ``SigV4Verifier.verify_signature`` with the key's secret (constant-time comparison).

A presigned URL carries the same parts as ``X-Amz-*`` query parameters; its canonical query string is the
raw query without ``X-Amz-Signature``, and instead of the ±5-minute clock check it must not be past
``X-Amz-Date + X-Amz-Expires`` (at most 7 days).

Errors are those AWS sends: ``IncompleteSignatureException`` for a header that is not a SigV4 header,
``InvalidSignatureException`` for a wrong signature, a mis-scoped credential or a stale request
("Signature expired: … is now earlier than … (… - 5 min.)"). A request with no signature at all never
gets here: the app answers it ``AccessDeniedException`` "Authorization header is missing", as Bedrock does
(``MissingAuthenticationTokenException`` remains for a caller of ``check`` that did not look first).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from outcrop.errors import (
    IncompleteSignature,
    InvalidSignature,
    MissingAuthenticationToken,
)

__all__ = [
    "ALGORITHM",
    "MISSING_TOKEN",
    "SIGNATURE_MISMATCH",
    "Credential",
    "RawRequest",
    "SigV4Verifier",
    "parse_authorization",
]

ALGORITHM = "AWS4-HMAC-SHA256"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_SKEW = dt.timedelta(minutes=5)
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)
MISSING_TOKEN = "Missing Authentication Token"

# ASCII patterns, so the standard ``re`` (which keeps the GIL for a match; ``regex`` gives it up and takes it
# back on every call, which costs more than these matches under load).
_PARAM = re.compile(r"\s*([A-Za-z]+)\s*=\s*([^,\s]*)\s*", re.ASCII)
_ACCESS_KEY = re.compile(r"[A-Za-z0-9+/=_.-]{1,128}", re.ASCII)
_SCOPE_DATE = re.compile(r"\d{8}", re.ASCII)
_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+)+-\d+", re.ASCII)
_HEADER_NAME = re.compile(r":?[a-z0-9!#$%&'*+.^_`|~-]+", re.ASCII)
_SIGNATURE = re.compile(r"[0-9a-f]{64}", re.ASCII)
_AMZ_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z", re.ASCII)
MAX_PRESIGNED_EXPIRES = 7 * 24 * 3600  # X-Amz-Expires, in seconds, as at AWS
PRESIGNED_PARAMS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
                    "X-Amz-Signature")


@dataclass(frozen=True)
class RawRequest:
    """An HTTP request as received: nothing decoded, header names lower-cased, repeats kept."""

    method: str
    raw_path: str
    raw_query: str
    headers: Sequence[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The value of ``name``, repeated values joined by commas (as SigV4 canonicalises them)."""
        values = [v for k, v in self.headers if k == name]
        return ",".join(values) if values else None

    def query_param(self, name: str) -> str | None:
        """The first value of query parameter ``name``, percent-decoded."""
        return query_param(self.raw_query, name)

    @property
    def presigned(self) -> bool:
        """Signed in the query string (a presigned URL) rather than in an ``Authorization`` header."""
        return self.header("authorization") is None and self.query_param("X-Amz-Algorithm") is not None


def query_param(raw_query: str, name: str) -> str | None:
    """The first value of query parameter ``name`` in ``raw_query``, percent-decoded."""
    for part in raw_query.split("&"):
        key, _, value = part.partition("=")
        if unquote(key) == name:
            return unquote(value)
    return None


@dataclass(frozen=True)
class Credential:
    """The parsed ``Authorization: AWS4-HMAC-SHA256 …`` header."""

    access_key: str
    date: str  # the credential scope's YYYYMMDD
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str  # X-Amz-Date, the time the client signed
    expires: int | None = None  # X-Amz-Expires of a presigned URL, in seconds

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def parse_authorization(value: str) -> tuple[str, str, tuple[str, ...], str]:
    """(access key, scope, signed header names, signature) of a SigV4 ``Authorization`` value.

    Raises ``IncompleteSignature`` naming every missing or malformed part, as AWS does.
    """
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise IncompleteSignature(
            f"Authorization header requires '{ALGORITHM}' as the signing algorithm. "
            f"Authorization={_printable(value)}"
        )
    params: dict[str, str] = {}
    for part in rest.split(","):
        m = _PARAM.fullmatch(part)
        if m is not None:
            params[m.group(1)] = m.group(2)
    problems = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "SignedHeaders", "Signature")
        if not params.get(name)
    ]
    if problems:
        raise IncompleteSignature(" ".join([*problems, f"Authorization={_printable(value)}"]))
    access_key, _, scope = params["Credential"].partition("/")
    signed = tuple(params["SignedHeaders"].split(";"))
    if not _ACCESS_KEY.fullmatch(access_key) or scope.count("/") != 3:
        raise IncompleteSignature(
            f"Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, "
            f"got '{_printable(params['Credential'])}'"
        )
    if not all(_HEADER_NAME.fullmatch(h) for h in signed) or list(signed) != sorted(set(signed)):
        raise IncompleteSignature(
            f"SignedHeaders must be a sorted, semicolon-separated list of lower-case header names, "
            f"got '{_printable(params['SignedHeaders'])}'"
        )
    return access_key, scope, signed, params["Signature"]


def _printable(value: str, limit: int = 256) -> str:
    """A caller-supplied value safe to echo in a message: printable ASCII, bounded length."""
    return "".join(c if " " <= c <= "~" else "?" for c in value[:limit])


class _ServerSigV4(SigV4Auth):
    """botocore's signer, fed the headers the client signed and nothing else."""

    def __init__(self, secret_key: str, credential: Credential, headers: HTTPHeaders) -> None:
        super().__init__(Credentials(credential.access_key, secret_key), credential.service, credential.region)
        self._signed = headers

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        return self._signed

    def signature(self, string_to_sign: str, request: AWSRequest) -> str:
        """As botocore's, with the signing key (four HMACs) derived once per secret, day, Region and service."""
        key = _signing_key(self.credentials.secret_key, request.context["timestamp"][0:8], self._region_name,
                           self._service_name)
        return self._sign(key, string_to_sign, hex=True)  # type: ignore[no-any-return]


@lru_cache(maxsize=1024)
def _signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    def sign(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

    return sign(sign(sign(sign(f"AWS4{secret_key}".encode(), date), region), service), "aws4_request")


class SigV4Verifier:
    """Verifies SigV4 requests for one signing name (``bedrock`` serves both Bedrock APIs)."""

    def __init__(
        self,
        service: str = "bedrock",
        *,
        regions: Container[str] | None = None,
        max_skew: dt.timedelta = MAX_SKEW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.regions = regions
        self.max_skew = max_skew
        self.clock = clock

    def check(self, request: RawRequest) -> Credential:
        """Everything that can be checked without the secret; returns the parsed credential."""
        if request.presigned:
            return self._check_presigned(request)
        authorization = request.header("authorization")
        if authorization is None:
            raise MissingAuthenticationToken(MISSING_TOKEN)
        access_key, scope, signed, signature = parse_authorization(authorization)
        amz_date = request.header("x-amz-date")
        return self._check_scope(request, authorization, access_key, scope, signed, signature, amz_date)

    def _check_presigned(self, request: RawRequest) -> Credential:
        """A presigned URL: the same checks on the ``X-Amz-*`` query parameters, plus its expiry."""
        values = {name: request.query_param(name) for name in PRESIGNED_PARAMS}
        missing = [name for name, value in values.items() if not value]
        shown = _printable(request.raw_query)
        if missing:
            raise IncompleteSignature(" ".join(
                [f"AWS query-string parameters must include '{name}'." for name in missing] + [f"Re-examine the query-string parameters. Query={shown}"]
            ))
        if values["X-Amz-Algorithm"] != ALGORITHM:
            raise IncompleteSignature(f"X-Amz-Algorithm only supports '{ALGORITHM}'. Query={shown}")
        expires = values["X-Amz-Expires"] or ""
        if not expires.isdigit() or not 1 <= int(expires) <= MAX_PRESIGNED_EXPIRES:
            raise IncompleteSignature(
                f"X-Amz-Expires must be a whole number of seconds from 1 to {MAX_PRESIGNED_EXPIRES}. Query={shown}"
            )
        header = (f"{ALGORITHM} Credential={values['X-Amz-Credential']}, SignedHeaders={values['X-Amz-SignedHeaders']}, "
                  f"Signature={values['X-Amz-Signature']}")
        access_key, scope, signed, signature = parse_authorization(header)
        credential = self._check_scope(request, header, access_key, scope, signed, signature, values["X-Amz-Date"],
                                       expires=int(expires))
        signed_at = _parse_amz_date(credential.amz_date)
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC).replace(microsecond=0)
        if now > signed_at + dt.timedelta(seconds=int(expires)):
            raise InvalidSignature(
                f"Signature expired: {credential.amz_date} + {expires} s is earlier than {_fmt(now)}; "
                "the presigned URL has expired."
            )
        return credential

    def _check_scope(
        self, request: RawRequest, authorization: str, access_key: str, scope: str, signed: tuple[str, ...],
        signature: str, amz_date: str | None, expires: int | None = None,
    ) -> Credential:
        date, region, service, terminator = scope.split("/")
        if amz_date is None:
            raise IncompleteSignature(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
                f"Authorization={_printable(authorization)}"
            )
        signed_at = _parse_amz_date(amz_date)
        if not _SCOPE_DATE.fullmatch(date) or date != amz_date[:8]:
            raise InvalidSignature(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                f"'{_printable(date, 16)}' != '{amz_date[:8]}', from '{amz_date}'."
            )
        if terminator != "aws4_request":
            raise InvalidSignature(
                f"Credential should be scoped with a valid terminator: 'aws4_request', not '{_printable(terminator, 32)}'."
            )
        if service != self.service:
            raise InvalidSignature(f"Credential should be scoped to correct service: '{self.service}'. ")
        if not _REGION.fullmatch(region) or (self.regions is not None and region not in self.regions):
            raise InvalidSignature("Credential should be scoped to a valid region. ")
        if expires is None:
            self._check_skew(signed_at, amz_date)
        elif signed_at > dt.datetime.fromtimestamp(self.clock(), dt.UTC) + self.max_skew:
            self._check_skew(signed_at, amz_date)  # a presigned URL may be old, but not from the future
        if "host" not in signed and ":authority" not in signed:
            raise InvalidSignature("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
        for name in signed:
            if name != ":authority" and request.header(name) is None:
                raise InvalidSignature(f"The request is missing the signed header '{_printable(name, 64)}'.")
        declared = request.header("x-amz-content-sha256")
        if declared is not None and not hmac.compare_digest(
            declared.strip().lower(), hashlib.sha256(request.body).hexdigest()
        ):
            raise InvalidSignature(
                "The provided 'x-amz-content-sha256' header does not match what was computed."
            )
        if not _SIGNATURE.fullmatch(signature):
            raise InvalidSignature(SIGNATURE_MISMATCH)
        return Credential(access_key, date, region, service, signed, signature, amz_date, expires)

    def verify_signature(self, request: RawRequest, credential: Credential, secret_key: str) -> None:
        """Recompute the signature with ``secret_key``; raise ``InvalidSignature`` unless it matches."""
        expected = self.signature(request, credential, secret_key)
        if not hmac.compare_digest(expected.encode(), credential.signature.encode()):
            raise InvalidSignature(SIGNATURE_MISMATCH)

    def signature(self, request: RawRequest, credential: Credential, secret_key: str) -> str:
        """The signature a client holding ``secret_key`` would have sent for this request."""
        headers = HTTPHeaders()
        for name in credential.signed_headers:
            if name == ":authority":
                value = request.header(":authority") or request.header("host") or ""
            else:
                value = request.header(name) or ""
            headers[name] = value
        query = request.raw_query
        if credential.expires is not None:  # the signature signs every query parameter but itself
            query = "&".join(p for p in query.split("&") if unquote(p.partition("=")[0]) != "X-Amz-Signature")
        url = "http://outcrop" + request.raw_path + (f"?{query}" if query else "")
        aws_request = AWSRequest(method=request.method, url=url, data=request.body)
        # The payload hash comes from the body, never from a header (checked against it in ``check``).
        aws_request.context["timestamp"] = credential.amz_date
        signer = _ServerSigV4(secret_key, credential, headers)
        canonical = signer.canonical_request(aws_request)
        return str(signer.signature(signer.string_to_sign(aws_request, canonical), aws_request))

    def _check_skew(self, signed_at: dt.datetime, amz_date: str) -> None:
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC).replace(microsecond=0)
        minutes = int(self.max_skew.total_seconds() // 60)
        if signed_at < now - self.max_skew:
            raise InvalidSignature(
                f"Signature expired: {amz_date} is now earlier than {_fmt(now - self.max_skew)} "
                f"({_fmt(now)} - {minutes} min.)"
            )
        if signed_at > now + self.max_skew:
            raise InvalidSignature(
                f"Signature not yet current: {amz_date} is still later than {_fmt(now + self.max_skew)} "
                f"({_fmt(now)} + {minutes} min.)"
            )


def _parse_amz_date(value: str) -> dt.datetime:
    try:
        m = _AMZ_DATE.fullmatch(value)
        if m is None:
            raise ValueError(value)
        return dt.datetime(*map(int, m.groups()), tzinfo=dt.UTC)  # type: ignore[misc]
    except ValueError:
        raise IncompleteSignature(
            f"Date must be in ISO-8601 'basic format'. Got '{_printable(value, 64)}'. See "
            "http://en.wikipedia.org/wiki/ISO_8601"
        ) from None


def _fmt(moment: dt.datetime) -> str:
    return moment.strftime(AMZ_DATE_FORMAT)
