"""For the tests that hold requests to leaving no reference cycles (``test_no_garbage_cycles.py``)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Awaitable, Callable, Iterator


@contextlib.contextmanager
def kept_garbage() -> Iterator[list[object]]:
    """What the garbage collector finds unreachable from the block's work, kept (``gc.DEBUG_SAVEALL``) in the
    list it gives, which is filled as the block ends."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    found: list[object] = []
    try:
        yield found
        gc.collect()
        found.extend(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


async def garbage_after(call: Callable[[], Awaitable[object]], times: int) -> list[object]:
    """What ``times`` calls of ``call`` leave to the collector, after one call to warm caches and pools."""
    await call()
    with kept_garbage() as garbage:
        for _ in range(times):
            await call()
    return garbage
