"""outcrop.batching: what was ready goes together, nothing waits for later data, order and errors are kept,
closing runs the source's cleanup, and a sender that does not take holds the producer back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from outcrop.batching import Batches


def run(coro):
    return asyncio.run(coro)


async def _chunks(chunks: list[list[str]], gap: float = 0.01, log: list[str] | None = None) -> AsyncIterator[str]:
    """Each chunk's items at once, then a wait, as a backend's stream arrives."""
    try:
        for chunk in chunks:
            for item in chunk:
                yield item
            await asyncio.sleep(gap)
    finally:
        if log is not None:
            log.append("closed")


def test_items_ready_together_go_together_and_in_order():
    async def main():
        batches = Batches(_chunks([["a", "b", "c"], ["d"], ["e", "f"]]))
        return [batch async for batch in batches]

    assert run(main()) == [["a", "b", "c"], ["d"], ["e", "f"]]


def test_an_item_is_handed_over_before_the_next_chunk_arrives():
    async def main():
        batches = Batches(_chunks([["first"], ["late"]], gap=0.5))
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = await anext(batches)
        waited = loop.time() - started
        await batches.aclose()
        return first, waited

    first, waited = run(main())
    assert first == ["first"]
    assert waited < 0.4  # not held back until the next chunk


def test_an_error_comes_after_the_items_made_before_it():
    async def failing() -> AsyncIterator[str]:
        yield "x"
        yield "y"
        raise ValueError("backend broke")

    async def main():
        got: list[list[str]] = []
        batches = Batches(failing())
        with pytest.raises(ValueError, match="backend broke"):
            async for batch in batches:
                got.append(batch)
        return got

    assert run(main()) == [["x", "y"]]


def test_closing_mid_stream_runs_the_sources_cleanup():
    async def main():
        log: list[str] = []
        batches = Batches(_chunks([["a"], ["b"], ["c"]], gap=10, log=log))
        assert await anext(batches) == ["a"]
        await asyncio.wait_for(batches.aclose(), 2)  # the producer was waiting for data: it is stopped
        return log

    assert run(main()) == ["closed"]


def test_a_sender_that_does_not_take_holds_the_producer_at_the_limit():
    async def main():
        made = 0

        async def endless() -> AsyncIterator[int]:
            nonlocal made
            while True:
                made += 1
                yield made
                await asyncio.sleep(0)

        batches = Batches(endless(), limit=5)
        await asyncio.sleep(0.05)  # nobody takes
        held = made
        first = await anext(batches)
        await asyncio.sleep(0.05)
        after = made
        await batches.aclose()
        return held, first, after

    held, first, after = run(main())
    assert held == 5 and first == [1, 2, 3, 4, 5]
    assert 5 < after <= 10  # taking a batch made room for one more batch, no more


def test_a_cancelled_sender_still_stops_the_producer():
    async def main():
        log: list[str] = []
        batches = Batches(_chunks([["a"], ["b"]], gap=10, log=log))

        async def sender() -> None:
            try:
                async for _ in batches:
                    pass
            finally:
                await batches.aclose()

        task = asyncio.create_task(sender())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.01)
        return log

    assert run(main()) == ["closed"]


def test_the_producer_lets_what_was_already_due_on_the_loop_go_first():
    order: list[str] = []

    async def source() -> AsyncIterator[str]:
        order.append("producer")
        yield "frame"

    async def main() -> list[str]:
        batches = Batches(source())
        # Due after the producer was made, as another stream's first frame is when many are answered at once.
        asyncio.get_running_loop().call_soon(order.append, "other stream")
        batch = await anext(batches)
        await batches.aclose()
        return batch

    assert run(main()) == ["frame"]
    assert order == ["other stream", "producer"]


def test_a_streamed_answer_sends_its_first_frame_alone_then_the_rest_of_its_chunk_together():
    from outcrop.app import _respond_stream

    sent: list[dict] = []
    log: list[str] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def main():
        frames = (item.encode() async for item in _chunks([["a", "b", "c"], ["d", "e"]], log=log))
        await _respond_stream(send, 200, [], frames, "req-1")

    run(main())
    assert sent[0]["type"] == "http.response.start"
    assert [m["body"] for m in sent[1:]] == [b"a", b"bc", b"de", b""]  # the first frame did not wait for b, c
    assert sent[-1]["more_body"] is False
    assert log == ["closed"]


def test_a_streamed_answer_without_frames_ends_at_once():
    from outcrop.app import _respond_stream

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def nothing() -> AsyncIterator[bytes]:
        return
        yield b""

    run(_respond_stream(send, 200, [], nothing(), "req-1"))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[1] == {"type": "http.response.body", "body": b"", "more_body": False}
