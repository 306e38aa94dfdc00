"""Time limits on the request path: ``asyncio.timeout``'s behaviour without a loop timer per limit.

Every invocation runs inside three time limits (the body's read, the router's deadline, the backend's
timeout), and almost none of them ever fires. ``asyncio.timeout`` schedules a loop timer for each on
entry and cancels it on exit; under uvloop that is a libuv timer handle made, started, stopped and
closed, ~4 µs of a ~6 µs enter/exit when warm, and several times that on a busy server (bench/runtime).

Here a limit only joins the set of limits due in the same ``RESOLUTION`` slot, and leaves it on exit. One
loop timer per event loop is armed at the earliest slot that may still hold a live limit; when it fires,
the limits due are expired (their tasks cancelled) and it moves on to the next such slot. A limit fires
at most ``RESOLUTION`` late, which no caller here needs finer: they are whole seconds, or hundreds of
milliseconds in tests.

``with within(seconds):`` inside a task behaves as ``async with asyncio.timeout(seconds):`` does: when
it expires the task is cancelled, and the ``CancelledError`` that comes out of the block becomes
``TimeoutError`` (unless someone else also cancelled the task, which then stays cancelled). Nested
limits each raise only for themselves.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import threading
from types import TracebackType

__all__ = ["RESOLUTION", "Limit", "within"]

RESOLUTION = 0.01  # seconds per slot
EARLY = 0.001  # a loop timer may fire this much early (uvloop counts in milliseconds)


class Limit:
    """One time limit on the current task, entered with ``with``."""

    __slots__ = ("_cancelling", "_slot", "_timers", "exited", "expired", "task", "when")

    def __init__(self, timers: _Timers, task: asyncio.Task[object], when: float) -> None:
        self._timers = timers
        self.task = task
        self.when = when
        self.expired = False
        self.exited = False
        self._cancelling = 0
        self._slot: set[Limit] | None = None

    def __enter__(self) -> Limit:
        self._cancelling = self.task.cancelling()
        self._timers.add(self)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.exited = True
        slot = self._slot
        if slot is not None:
            slot.discard(self)
            self._slot = None
        if self.expired and self.task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
            raise TimeoutError from error

    def expire(self) -> None:
        if self.exited or self.expired:
            return
        self._slot = None
        self.expired = True
        self.task.cancel()


class _Timers:
    """The limits of one event loop, by slot, and the one loop timer that expires them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.slots: dict[int, set[Limit]] = {}
        self.due: list[int] = []  # heap of slot numbers (a slot may appear more than once)
        self.armed: int | None = None  # the slot the loop timer is set for
        self.timer: asyncio.TimerHandle | None = None

    def add(self, limit: Limit) -> None:
        if limit.when <= self.loop.time():
            self.loop.call_soon(limit.expire)
            return
        number = math.ceil(limit.when / RESOLUTION)
        slot = self.slots.get(number)
        if slot is None:
            slot = self.slots[number] = set()
            heapq.heappush(self.due, number)
            if self.armed is None or number < self.armed:
                self._arm(number)
        slot.add(limit)
        limit._slot = slot

    def _arm(self, number: int) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.armed = number
        self.timer = self.loop.call_at(number * RESOLUTION, self._fire)

    def _fire(self) -> None:
        self.armed = self.timer = None
        now = self.loop.time()
        due, slots = self.due, self.slots
        # Expire what is due, and drop the slots left empty by limits that ended, so that the timer is
        # next set for a slot with a live limit in it.
        while due:
            number = due[0]
            slot = slots.get(number)
            if slot and number * RESOLUTION > now + EARLY:
                self._arm(number)
                return
            heapq.heappop(due)
            if slot is not None:
                del slots[number]
                for limit in slot:
                    limit.expire()


_last: tuple[asyncio.AbstractEventLoop, _Timers] | None = None
_all: dict[int, _Timers] = {}
_all_lock = threading.Lock()  # loops of other threads (an embedded server, a test's) may look up at once


def _timers(loop: asyncio.AbstractEventLoop) -> _Timers:
    global _last
    last = _last
    if last is not None and last[0] is loop:
        return last[1]
    with _all_lock:
        timers = _all.get(id(loop))
        if timers is None or timers.loop is not loop:
            timers = _all[id(loop)] = _Timers(loop)
            for key in [k for k, t in _all.items() if t.loop.is_closed()]:
                del _all[key]
    _last = (loop, timers)
    return timers


def within(seconds: float) -> Limit:
    """A limit of ``seconds`` from now on the running task (``with within(5): ...``)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task(loop)
    if task is None:
        raise RuntimeError("within() must be used inside a task")
    return Limit(_timers(loop), task, loop.time() + seconds)
