"""Opaque, signed page tokens for List operations.

A token carries the sort key of the last item returned, and is bound by an HMAC to the account, Region
and filter it was issued for. A token outcrop did not issue, or one issued for another filter, is a
ValidationException rather than a silently wrong page. The key is generated once per database and kept
in the ``settings`` table, so that every server process sharing the database accepts every token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, select

from outcrop.errors import ValidationError
from outcrop.store.schema import settings
from outcrop.store.upsert import insert_ignore

TOKEN_KEY_SETTING = "page_token_key"


def load_token_key(conn: Connection) -> bytes:
    """The database's page-token key, created on first use."""
    conn.execute(insert_ignore(conn, settings, {"key": TOKEN_KEY_SETTING, "value": secrets.token_hex(32)}))
    value = conn.execute(select(settings.c.value).where(settings.c.key == TOKEN_KEY_SETTING)).scalar_one()
    return bytes.fromhex(value)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageTokens:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: bytes, scope: Sequence[str]) -> bytes:
        msg = "\x1f".join(scope).encode() + b"\x1e" + payload
        return hmac.new(self._key, msg, hashlib.sha256).digest()[:16]

    def encode(self, position: Sequence[Any], scope: Sequence[str]) -> str:
        payload = orjson.dumps(list(position))
        return _b64(payload) + "." + _b64(self._mac(payload, scope))

    def decode(self, token: str, scope: Sequence[str]) -> tuple[Any, ...]:
        try:
            payload_text, mac_text = token.split(".")
            payload, mac = _unb64(payload_text), _unb64(mac_text)
            valid = hmac.compare_digest(mac, self._mac(payload, scope))
            position = tuple(orjson.loads(payload)) if valid else ()
        except (ValueError, binascii.Error, orjson.JSONDecodeError):
            valid, position = False, ()
        if not valid or len(position) != 2:
            raise ValidationError(
                "The nextToken is not valid for this request. Pass the nextToken from the previous "
                "response unchanged, with the same filter."
            )
        return position
