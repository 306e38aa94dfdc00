"""``/_outcrop/chaos``: POST adds a rule, GET lists them, DELETE removes all (or ``/_outcrop/chaos/{id}``).

Every server process sharing the database answers the same: GET reads the rules afresh.
"""

from __future__ import annotations

import orjson

from outcrop.errors import NotFound, ServiceError, UnknownOperation, ValidationError
from outcrop.runtime.chaos import Chaos
from outcrop.wire.restjson import JSON_CONTENT_TYPE, own_error_response


async def chaos_endpoint(chaos: Chaos, method: str, path: str, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and JSON body; errors as ``{"__type", "message"}`` (``own_error_response``)."""
    try:
        status, answer = await _handle(chaos, method, path, body)
    except ServiceError as e:
        return own_error_response(e)
    return status, [(b"content-type", JSON_CONTENT_TYPE)], answer


async def _handle(chaos: Chaos, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    rule_id = path.removeprefix("/_outcrop/chaos").strip("/")
    if method == "GET" and not rule_id:
        return 200, orjson.dumps({"rules": [r.describe() for r in await chaos.rules(fresh=True)]})
    if method == "POST" and not rule_id:
        try:
            raw = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError as e:
            raise ValidationError(f"The body is not valid JSON: {e.msg}.") from None
        if not isinstance(raw, dict):
            raise ValidationError("The body must be one chaos rule, a JSON object.")
        return 201, orjson.dumps((await chaos.add(raw)).describe())
    if method == "DELETE":
        if not rule_id:
            await chaos.clear()
            return 200, orjson.dumps({"rules": []})
        if not await chaos.remove(rule_id):
            raise NotFound(f"No chaos rule {rule_id}.")
        return 200, orjson.dumps({"deleted": rule_id})
    raise UnknownOperation(f"No outcrop endpoint at {method} {path}.")
