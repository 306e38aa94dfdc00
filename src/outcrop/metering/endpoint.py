"""``GET /_outcrop/usage``: the usage and cost report of the caller's account, as JSON.

Parameters: ``since``, ``until`` (ISO-8601), ``granularity`` (minute|hour|day|month), ``groupBy``
(repeatable or comma-separated: profile, model, region, identity, modelId, tag:KEY, metadata:KEY), ``source``
(rollups, the default, or events). Every event this process has emitted is in the database before the
report is read, so a client sees its own invocations at once.
"""

from __future__ import annotations

from urllib.parse import parse_qs

import orjson

from outcrop.errors import ServiceError, UnknownOperation, ValidationError
from outcrop.metering.meter import Meter
from outcrop.metering.queries import QueryError, parse_query, run_query
from outcrop.store.engine import Store
from outcrop.wire.restjson import JSON_CONTENT_TYPE, own_error_response


async def usage_endpoint(meter: Meter | None, store: Store, account: str, method: str,
                         query: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and JSON body; errors as ``{"__type", "message"}`` (``own_error_response``)."""
    try:
        if method != "GET":
            raise UnknownOperation(f"No outcrop endpoint at {method} /_outcrop/usage.")
        params = parse_qs(query.decode("latin-1"))

        def one(name: str) -> str | None:
            values = params.get(name)
            return values[-1] if values else None

        source = one("source") or "rollups"
        if source not in ("rollups", "events"):
            raise ValidationError("source must be rollups or events")
        try:
            q = parse_query(account, one("since"), one("until"), one("granularity"), params.get("groupBy", []))
        except QueryError as e:
            raise ValidationError(str(e)) from None
        if meter is not None:
            await meter.flush()
        report = await store.read(lambda conn: run_query(conn, q, source))
        return 200, [(b"content-type", JSON_CONTENT_TYPE)], orjson.dumps(report)
    except ServiceError as e:
        return own_error_response(e)
