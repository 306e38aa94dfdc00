"""Request IDs are version-7 UUIDs: valid, unique, and in time order (the usage-event index relies on it)."""

from __future__ import annotations

import time
import uuid

from outcrop.ids import request_id


def test_request_ids_are_version_7_uuids_in_aws_text_form() -> None:
    rid = request_id()
    parsed = uuid.UUID(rid)
    assert str(parsed) == rid
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    ms = parsed.int >> 80
    assert abs(ms - time.time_ns() // 1_000_000) < 5_000


def test_request_ids_are_unique_and_ordered_by_millisecond() -> None:
    ids = [request_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    stamps = [uuid.UUID(i).int >> 80 for i in ids]
    assert stamps == sorted(stamps)
