"""Request IDs are version-7 UUIDs: valid, unique, and in time order (the usage-event index relies on it)."""

from __future__ import annotations

import os
import random
import time
import uuid

import pytest

import outcrop.ids as ids
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


def test_request_id_is_the_uuid7_of_the_clock_and_the_generator_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    now_ns = 1_795_788_895_123_456_789
    monkeypatch.setattr(ids.time, "time_ns", lambda: now_ns)
    saved = ids._random
    try:
        for seed in range(500):
            ids._random = random.Random(seed)
            bits = random.Random(seed).getrandbits(74)
            rand_a, rand_b = bits >> 62, bits & ((1 << 62) - 1)
            expected = uuid.UUID(int=(now_ns // 1_000_000) << 80 | 7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b)
            assert ids.request_id() == str(expected)
    finally:
        ids._random = saved


def test_a_forked_child_does_not_repeat_its_parents_request_ids() -> None:
    request_id()  # the parent's generator exists before the fork
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next IDs, to the parent
        try:
            os.write(write_end, ",".join(request_id() for _ in range(3)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 4096).decode().split(",")
    os.close(read_end)
    os.waitpid(pid, 0)
    parent = [request_id() for _ in range(3)]
    # The millisecond may be the same; the 74 random bits after it must not be.
    assert {c[14:] for c in child}.isdisjoint(p[14:] for p in parent)
