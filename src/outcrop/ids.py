"""Request IDs: UUIDs in AWS's form, time-ordered, made without a system call per request.

Each is a version-7 UUID (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits. Clients treat a
request ID as opaque text, so the layout is free to choose, and time order matters to the database:
every usage event is stored under its request ID, and IDs that arrive in order append to the end of that
index instead of landing on a random page of it. With random (version-4) IDs a batch of events dirtied
nearly every page of the index once it grew, and metering cost about three times the CPU it does now.

``uuid.uuid4()`` reads the kernel's random source on every call, and on a busy server the event loop then
waits to get the GIL back. Request IDs need to be unique, not secret, so the random bits come from a
per-process generator seeded once from the kernel (and seeded again in a forked child, which must not
repeat its parent's sequence). Anything secret (keys, tokens, profile IDs) keeps using ``secrets``.
"""

from __future__ import annotations

import os
import random
import time

_random: random.Random | None = None

_VERSION = 7 << 76
_VARIANT = 0b10 << 62


def _seed() -> random.Random:
    global _random
    _random = random.Random(os.urandom(32))
    return _random


# A forked child seeds its own generator (asking for the process ID on every call was a system call each).
os.register_at_fork(after_in_child=_seed)


def request_id() -> str:
    generator = _random or _seed()
    return uuid7(time.time_ns() // 1_000_000, generator.getrandbits(74))


def uuid7(unix_ms: int, random_bits: int) -> str:
    """The text of the version-7 UUID of ``unix_ms`` and 74 random bits, as ``uuid.UUID`` would print it."""
    # unix_ts_ms (48) | ver (4) | rand_a (12) | var (2) | rand_b (62)
    value = unix_ms << 80 | _VERSION | (random_bits >> 62) << 64 | _VARIANT | (random_bits & _RAND_B)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_RAND_B = (1 << 62) - 1
