"""Who is calling: the ``open`` and ``strict`` authentication modes.

``open`` (the embedded default, for local development) trusts any caller: the account comes from the
config's ``accounts`` mapping of the SigV4 access key, or the default account, and the Region from the
credential scope. Nothing is verified and no policy applies.

``strict`` (``outcrop serve --auth strict``) authenticates every request but ``GET /_outcrop/health``:

* ``Authorization: AWS4-HMAC-SHA256 …``: the header, scope and clock are checked first
  (``outcrop.wire.sigv4``), then the access key is read from the store and the signature verified
  with its secret. An unknown key is ``UnrecognizedClientException``, as at AWS.
* ``Authorization: Bearer <Bedrock API key>``: the key's SHA-256 is looked up. A bearer request names
  no Region, so it acts in the default Region (at AWS the Region is the endpoint's).
* a presigned URL (``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Signature``, ``X-Amz-Expires`` … in
  the query string): verified as the header form, and refused once ``X-Amz-Date + X-Amz-Expires`` is past.
* temporary credentials (``X-Amz-Security-Token``, header or query): ``UnrecognizedClientException``
  with a message that says so; outcrop issues no session tokens and cannot verify STS's.
* no ``Authorization`` header (and no presigned query): ``AccessDeniedException`` "Authorization header is
  missing", as Bedrock answers it (403); a header of any other form: the SigV4 parse error.

Keys listed only in the config's ``accounts`` mapping carry no secret, so strict mode does not accept
them: strict mode knows only keys made with ``outcrop keys create`` / ``outcrop api-keys create``.
"""

from __future__ import annotations

import enum
from collections.abc import Container
from dataclasses import dataclass

from outcrop.auth.identities import API_KEY_PREFIX, Identities, Identity
from outcrop.errors import AccessDenied, UnrecognizedClient
from outcrop.wire.sigv4 import RawRequest, SigV4Verifier

__all__ = ["MISSING_AUTHORIZATION", "AuthMode", "Authenticator", "Caller"]

INVALID_TOKEN = "The security token included in the request is invalid."
# Bedrock's answer to a request with no Authorization header (403 AccessDeniedException, {"Message": …}), seen by
# clients that dropped their bearer key: karthink/gptel#1397, anthropics/claude-code#44910, #44963, #45000.
MISSING_AUTHORIZATION = "Authorization header is missing"
# Observed in Bedrock's answers to bad API keys (403, {"Message": …}); the error code is not documented.
API_KEY_FORMAT = "Invalid API Key format: Must start with pre-defined prefix"
API_KEY_INVALID = "Authentication failed: Please make sure your API Key is valid."
SHORT_TERM_PREFIX = "bedrock-api-key-"
MAX_API_KEY_LENGTH = 8192
SESSION_TOKEN_REFUSED = (
    f"{INVALID_TOKEN} outcrop accepts only long-term access keys made with `outcrop keys create`; temporary "
    "credentials (X-Amz-Security-Token, from STS or an assumed role) cannot be verified here."
)


class AuthMode(enum.StrEnum):
    OPEN = "open"
    STRICT = "strict"


@dataclass(frozen=True)
class Caller:
    """An authenticated caller and the Region the request is addressed to."""

    identity: Identity
    region: str


class Authenticator:
    """Strict-mode authentication of one request (SigV4 or bearer) against the keys in the store."""

    def __init__(self, identities: Identities, default_region: str, regions: Container[str] | None = None) -> None:
        self.identities = identities
        self.default_region = default_region
        self.verifier = SigV4Verifier("bedrock", regions=regions)

    async def authenticate(self, request: RawRequest) -> Caller:
        if request.header("x-amz-security-token") is not None or request.query_param("X-Amz-Security-Token"):
            raise UnrecognizedClient(SESSION_TOKEN_REFUSED)
        authorization = request.header("authorization")
        if request.presigned:
            authorization = ""
        elif authorization is None or not authorization.strip():
            raise AccessDenied(MISSING_AUTHORIZATION)
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer":
            return Caller(await self._api_key(token.strip()), self.default_region)
        credential = self.verifier.check(request)
        found = await self.identities.access_key(credential.access_key)
        if found is None:
            raise UnrecognizedClient(INVALID_TOKEN)
        identity, secret = found
        self.verifier.verify_signature(request, credential, secret)
        return Caller(identity, credential.region)

    async def _api_key(self, token: str) -> Identity:
        if not token.startswith((API_KEY_PREFIX, SHORT_TERM_PREFIX)) or len(token) > MAX_API_KEY_LENGTH:
            raise UnrecognizedClient(API_KEY_FORMAT)
        identity = await self.identities.api_key(token)
        if identity is None:
            raise UnrecognizedClient(API_KEY_INVALID)
        return identity
