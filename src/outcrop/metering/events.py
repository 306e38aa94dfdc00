"""The usage event: what one invocation leaves behind, built from the runtime's ``InvocationRecord``.

An event is a flat record (the database's row): request ID, time, account,
source and inference Region, operation, the modelId as called and the CloudWatch ``ModelId`` dimension
it counts under (a profile's ID as AWS uses it — the 12-character ID of an application profile, the
``us.…`` ID of a system profile — or the model ID of a direct call), the profile (ARN, ID, type), the
foundation model, tokens of each kind, latency and time to first token, the outcome class with the AWS
error code, the cost in pico-USD, the caller's identity, the Converse call's ``requestMetadata`` and the
profile's tags at that moment.

Outcome classes follow CloudWatch's runtime metrics: ``throttled`` (HTTP 429: ThrottlingException,
ModelNotReadyException), ``server_error`` (5xx, and the model's own failures ModelErrorException and
ModelStreamErrorException), ``client_error`` (any other 4xx, and a stream the client abandoned,
``ClientDisconnected``), ``success``.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any, Literal, TypedDict

from outcrop.control.identifiers import PROFILE_ARN
from outcrop.errors import ServiceError
from outcrop.metering.prices import Prices
from outcrop.providers.messages import Usage

_NO_USAGE = Usage(0, 0)

Outcome = Literal["success", "client_error", "server_error", "throttled"]
OUTCOMES: tuple[Outcome, ...] = ("success", "client_error", "server_error", "throttled")
CLIENT_DISCONNECTED = "ClientDisconnected"
_MODEL_FAILURES = frozenset({"ModelErrorException", "ModelStreamErrorException"})


def _statuses() -> dict[str, int]:
    found: dict[str, int] = {}
    pending: list[type[ServiceError]] = [ServiceError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls.status)
        pending.extend(cls.__subclasses__())
    return found


_STATUS_BY_CODE = _statuses()


def classify(code: str, status: int | None = None) -> Outcome:
    """The outcome class of an invocation's result: "success" or an AWS error code."""
    if code == "success":
        return "success"
    if code == CLIENT_DISCONNECTED:
        return "client_error"
    status = status or _STATUS_BY_CODE.get(code, 500)
    if status == 429:
        return "throttled"
    if status >= 500 or code in _MODEL_FAILURES:
        return "server_error"
    return "client_error"


class UsageEvent(TypedDict):
    request_id: str
    time_us: int
    account: str
    source_region: str
    inference_region: str | None
    operation: str
    model_id: str
    model_dim: str
    profile_arn: str | None
    profile_id: str | None
    profile_type: str | None
    foundation_model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    latency_ms: int
    ttft_ms: int | None
    outcome: str
    error_code: str | None
    cost_pusd: int
    identity: str
    request_metadata: dict[str, str]
    tags: dict[str, str]


@lru_cache(maxsize=4096)
def profile_of(profile_arn: str | None) -> tuple[str | None, str | None]:
    """(profile ID, type) of a profile ARN; (None, None) for a direct call."""
    if not profile_arn:
        return None, None
    m = PROFILE_ARN.fullmatch(profile_arn)
    if m is None:
        return profile_arn.rsplit("/", 1)[-1], None
    kind = "APPLICATION" if m["kind"] == "application-inference-profile" else "SYSTEM_DEFINED"
    return m["id"], kind


# The journal's line is the JSON array of an event's values in this order (``event_values``): built and
# written without a dict, which with its keys in every line cost the event loop ~2% of a Converse
# (bench/runtime/icount.py). The ingester reads it back as a ``UsageEvent``; lines journaled by earlier
# versions are JSON objects.
FIELDS: tuple[str, ...] = tuple(UsageEvent.__annotations__)
INDEX = {name: i for i, name in enumerate(FIELDS)}


def event_values(record: Any, prices: Prices, now: float | None = None) -> tuple[Any, ...]:
    """The event of a finished invocation, its values in ``FIELDS`` order (the journal's line)."""
    now_wall = time.time() if now is None else now
    started_wall = now_wall - max(0.0, time.monotonic() - record.started)
    time_us = int(started_wall * 1_000_000)
    usage: Usage = record.usage or _NO_USAGE
    profile_arn = record.profile_arn
    profile_id, profile_type = profile_of(profile_arn)
    model_id = record.model_id
    code = record.outcome
    tags = record.tags
    metadata = record.metadata
    return (
        record.request_id, time_us, record.account, record.source_region, record.served_region, record.operation,
        record.requested_model_id or model_id, profile_id or model_id, profile_arn, profile_id, profile_type,
        model_id, usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens,
        record.latency_ms, record.first_token_ms,
        "success" if code == "success" else classify(code, record.error_status),
        None if code == "success" else code,
        prices.price(model_id, record.source_region, time_us).cost(usage),
        record.principal or f"arn:aws:iam::{record.account}:root",
        dict(metadata) if metadata else {}, dict(tags) if tags else {},
    )

