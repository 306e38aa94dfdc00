"""Hand over a stream's frames in batches: every frame that was ready by the time the sender could take it.

A backend's stream arrives in chunks, and one chunk often holds many events (an OpenAI-compatible server
flushes several SSE lines at once; a Bedrock upstream packs many frames in one read). Sending each frame
as its own ASGI message costs a round trip through the HTTP server per frame: at c=16 in bench/runtime
that, not the translation, decided a stream's time to first byte. ``Batches`` runs the frame iterator in a
task of its own, which turns each chunk into frames without stopping; the sender takes whatever has
accumulated each time it comes back, so a frame waits only for the frames made from the same chunk and
is never held back for later data.

At most ``limit`` frames wait unsent: past that the producer waits for the sender (a slow client holds
back the backend's stream, not the server's memory). ``aclose`` stops the producer (cancelling it, so
the iterator's cleanup runs: usage recorded, backend connection released) and waits for it to finish.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

LIMIT = 256


class Batches(Generic[T]):
    def __init__(self, source: AsyncIterator[T], limit: int = LIMIT) -> None:
        self._source = source
        self._limit = limit
        self._ready: list[T] = []
        self._done = False
        self._error: BaseException | None = None
        self._loop = asyncio.get_running_loop()
        self._taker: asyncio.Future[None] | None = None  # the sender, waiting for frames
        self._room: asyncio.Future[None] | None = None  # the producer, waiting for the sender
        self._task = self._loop.create_task(self._produce())

    def __aiter__(self) -> Batches[T]:
        return self

    async def __anext__(self) -> list[T]:
        if self._room is not None and not self._room.done():
            self._room.set_result(None)
        while not self._ready:
            if self._done:
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
                raise StopAsyncIteration
            self._taker = self._loop.create_future()
            try:
                await self._taker
            finally:
                self._taker = None
        batch, self._ready = self._ready, []
        return batch

    async def aclose(self) -> None:
        if not self._task.done():
            self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            if not self._task.cancelled():
                raise  # the caller itself is being cancelled: the producer finishes on its own
        await aclose(self._source)

    def _wake(self) -> None:
        taker = self._taker
        if taker is not None and not taker.done():
            taker.set_result(None)

    async def _produce(self) -> None:
        try:
            # Let whatever is already due on the loop go first: with many streams answered at once, that is
            # the other streams' first frames, which would otherwise wait for this whole chunk's frames.
            # Same-run A/B at c=16 (two runs, 8 rounds): TTFB p50 0.55 ms lower in every round, and as many
            # streams per second or more.
            await asyncio.sleep(0)
            async for item in self._source:
                self._ready.append(item)
                self._wake()
                if len(self._ready) >= self._limit:
                    self._room = self._loop.create_future()
                    await self._room
                    self._room = None
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # passed to the sender, after the frames made before it
            self._error = e
        finally:
            self._done = True
            self._wake()


async def aclose(source: AsyncIterator[Any]) -> None:
    """Close ``source`` if it can be closed (an async generator runs its cleanup)."""
    close = getattr(source, "aclose", None)
    if close is not None:
        await close()
