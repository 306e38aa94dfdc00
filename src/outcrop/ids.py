"""Request IDs: UUIDs in AWS's form, made without a system call per request.

``uuid.uuid4()`` reads the kernel's random source on every call, and on a busy server the event loop then
waits to get the GIL back. Request IDs need to be unique, not secret, so they come from a per-process
generator seeded once from the kernel (and seeded again in a forked child, which must not repeat its
parent's sequence). Anything secret (keys, tokens, profile IDs) keeps using ``secrets``.
"""

from __future__ import annotations

import os
import random

_state: tuple[int, random.Random] | None = None


def request_id() -> str:
    global _state
    pid = os.getpid()
    if _state is None or _state[0] != pid:
        _state = (pid, random.Random(os.urandom(32)))
    # uuid.UUID(int=…, version=4) as text, without building the object: the version and variant bits set.
    h = "%032x" % (_state[1].getrandbits(128) & _CLEAR | _SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_SET = (0x8000 << 48) | (4 << 76)
