"""Request IDs are the text of ``uuid.UUID(int=<128 random bits>, version=4)``."""

from __future__ import annotations

import os
import random
import uuid

import outcrop.ids as ids


def test_request_id_is_a_version_4_uuid_of_the_generator_bits() -> None:
    saved = ids._state
    try:
        for seed in range(500):
            ids._state = (os.getpid(), random.Random(seed))
            expected = str(uuid.UUID(int=random.Random(seed).getrandbits(128), version=4))
            assert ids.request_id() == expected
    finally:
        ids._state = saved
    rid = ids.request_id()
    assert uuid.UUID(rid).version == 4 and str(uuid.UUID(rid)) == rid
