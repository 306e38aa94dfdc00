"""Who may call outcrop: SigV4 access keys and Bedrock API keys, each bound to an account and a policy.

An access key is kept with its secret, because verifying a SigV4 signature needs the secret itself (as
at AWS); an API key is kept only as the SHA-256 of the key, with a short, non-secret ``key_id`` for
listing and deleting. Neither secret is ever logged, and neither appears in a listing.

A key with no policy may do everything in its account (as AWS root credentials may); a key with a
policy acts as an IAM user whose only identity policy is that document. A key with a user name acts
as ``arn:aws:iam::<account>:user/<name>``; without one, as the account's root (or, with a policy, as a
user named after the key), which is the principal that AccessDenied messages name.

Every authenticated request reads its key with one primary-key lookup, so a key created or deleted with
``outcrop keys …`` is honoured or refused by a running server at once, with no cache to expire. The
lookup is an indexed point read (on SQLite, inline on the event loop: about 50 µs measured here).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
import regex
from sqlalchemy import Connection, bindparam, delete, insert, select

from outcrop.store.engine import Statement, Store
from outcrop.store.schema import access_keys, api_keys

__all__ = [
    "API_KEY_PREFIX",
    "Identities",
    "Identity",
    "IdentityError",
    "api_key_hash",
]

# Bedrock's long-term API keys start with "ABSK" and encode "BedrockAPIKey-<id>-at-<account>:<secret>";
# outcrop issues keys of the same form, so tools that recognise Bedrock keys recognise these.
API_KEY_PREFIX = "ABSK"
ACCOUNT = regex.compile(r"\d{12}")
USER_NAME = regex.compile(r"[\w+=,.@-]{1,64}")
_ACCESS_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


class IdentityError(ValueError):
    """A key cannot be created as asked; the message says why."""


@dataclass(frozen=True)
class Identity:
    """An authenticated caller."""

    account: str
    user_name: str | None  # None: the account's root
    policy: str | None  # the identity policy (JSON); None: every action allowed
    key_id: str  # the access key ID, or the API key's ``key_id``

    @property
    def principal_arn(self) -> str:
        if self.user_name is None:
            return f"arn:aws:iam::{self.account}:root"
        return f"arn:aws:iam::{self.account}:user/{self.user_name}"


def api_key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8", "surrogateescape")).hexdigest()


def _now_us() -> int:
    return time.time_ns() // 1000


def _iso(us: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(us / 1_000_000))


_ACCESS_KEY_BY_ID = Statement(
    select(
        access_keys.c.secret_access_key,
        access_keys.c.account,
        access_keys.c.user_name,
        access_keys.c.policy,
    ).where(access_keys.c.access_key_id == bindparam("access_key_id"))
)
_API_KEY_BY_HASH = Statement(
    select(api_keys.c.key_id, api_keys.c.account, api_keys.c.user_name, api_keys.c.policy).where(
        api_keys.c.key_hash == bindparam("key_hash")
    )
)


class Identities:
    """Keys in the store: looked up per request by the server, managed by the ``outcrop`` CLI."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- the request path -----------------------------------------------------------------------------
    async def access_key(self, access_key_id: str) -> tuple[Identity, str] | None:
        """The identity of ``access_key_id`` and its secret, or None if there is no such key."""
        row = await self.store.read(lambda c: _ACCESS_KEY_BY_ID.first(c, {"access_key_id": access_key_id}))
        if row is None:
            return None
        identity = Identity(row["account"], row["user_name"] or None, row["policy"], access_key_id)
        return identity, row["secret_access_key"]

    async def api_key(self, api_key: str) -> Identity | None:
        """The identity of a bearer API key, or None if no such key was issued (or it was deleted)."""
        row = await self.store.read(lambda c: _API_KEY_BY_HASH.first(c, {"key_hash": api_key_hash(api_key)}))
        if row is None:
            return None
        return Identity(row["account"], row["user_name"] or None, row["policy"], row["key_id"])

    # -- administration (the CLI) ---------------------------------------------------------------------
    def create_access_key(self, account: str, policy: str | None = None, user_name: str | None = None) -> dict[str, Any]:
        """Issue an access key; the result holds the secret, which is shown this once."""
        _check(account, user_name)
        key_id = "AKIA" + "".join(secrets.choice(_ACCESS_KEY_ALPHABET) for _ in range(16))
        secret = base64.b64encode(secrets.token_bytes(30)).decode()
        row = {
            "access_key_id": key_id,
            "secret_access_key": secret,
            "account": account,
            "user_name": _stored_name(user_name, policy, key_id),
            "policy": policy,
            "created_us": _now_us(),
        }
        self.store.write_sync(lambda c: c.execute(insert(access_keys).values(**row)))
        return {"accessKeyId": key_id, "secretAccessKey": secret, "account": account}

    def list_access_keys(self, account: str | None = None) -> list[dict[str, Any]]:
        """Every access key (never a secret), oldest first."""
        stmt = select(
            access_keys.c.access_key_id, access_keys.c.account, access_keys.c.user_name,
            access_keys.c.policy, access_keys.c.created_us,
        ).order_by(access_keys.c.created_us, access_keys.c.access_key_id)
        if account is not None:
            stmt = stmt.where(access_keys.c.account == account)
        rows = self.store.read_sync(lambda c: [dict(r) for r in c.execute(stmt).mappings()])
        return [
            {
                "accessKeyId": r["access_key_id"],
                "account": r["account"],
                **({"userName": r["user_name"]} if r["user_name"] else {}),
                "hasPolicy": r["policy"] is not None,
                "createdAt": _iso(r["created_us"]),
            }
            for r in rows
        ]

    def delete_access_key(self, access_key_id: str) -> bool:
        def run(c: Connection) -> bool:
            return bool(c.execute(delete(access_keys).where(access_keys.c.access_key_id == access_key_id)).rowcount)

        return self.store.write_sync(run)

    def create_api_key(self, account: str, policy: str | None = None, user_name: str | None = None) -> dict[str, Any]:
        """Issue a Bedrock API key; only its hash is kept, so the key is shown this once."""
        _check(account, user_name)
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        api_key = API_KEY_PREFIX + base64.b64encode(f"BedrockAPIKey-{key_id}-at-{account}:{secret}".encode()).decode()
        row = {
            "key_hash": api_key_hash(api_key),
            "key_id": key_id,
            "account": account,
            "user_name": _stored_name(user_name, policy, f"BedrockAPIKey-{key_id}"),
            "policy": policy,
            "created_us": _now_us(),
        }
        self.store.write_sync(lambda c: c.execute(insert(api_keys).values(**row)))
        return {"apiKey": api_key, "apiKeyId": key_id, "account": account}

    def list_api_keys(self, account: str | None = None) -> list[dict[str, Any]]:
        stmt = select(
            api_keys.c.key_id, api_keys.c.account, api_keys.c.user_name, api_keys.c.policy, api_keys.c.created_us
        ).order_by(api_keys.c.created_us, api_keys.c.key_id)
        if account is not None:
            stmt = stmt.where(api_keys.c.account == account)
        rows = self.store.read_sync(lambda c: [dict(r) for r in c.execute(stmt).mappings()])
        return [
            {
                "apiKeyId": r["key_id"],
                "account": r["account"],
                **({"userName": r["user_name"]} if r["user_name"] else {}),
                "hasPolicy": r["policy"] is not None,
                "createdAt": _iso(r["created_us"]),
            }
            for r in rows
        ]

    def delete_api_key(self, key_id: str) -> bool:
        def run(c: Connection) -> bool:
            return bool(c.execute(delete(api_keys).where(api_keys.c.key_id == key_id)).rowcount)

        return self.store.write_sync(run)


def _check(account: str, user_name: str | None) -> None:
    if not ACCOUNT.fullmatch(account):
        raise IdentityError(f"account {account!r} is not a 12-digit AWS account ID")
    if user_name is not None and not USER_NAME.fullmatch(user_name):
        raise IdentityError(
            f"user name {user_name!r} must be 1-64 characters of letters, digits and +=,.@_-"
        )


def _stored_name(user_name: str | None, policy: str | None, default: str) -> str:
    """The empty name marks the account's root: a key with neither a policy nor a user name."""
    if user_name is not None:
        return user_name
    return "" if policy is None else default


def policy_json(document: Any) -> str:
    """A policy document as stored: compact JSON."""
    return orjson.dumps(document).decode()
