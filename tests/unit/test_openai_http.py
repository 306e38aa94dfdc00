"""The openai backend's HTTP/1.1 client and stream timeout, against small asyncio servers in the test.

The protocol as a whole (JSON, SSE, tool calls, failures) is covered over the wire by
tests/integration/test_runtime_openai.py; these are the connection-level cases it cannot provoke.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from gc_check import garbage_after

from outcrop.config import Deployment
from outcrop.errors import ModelTimeout
from outcrop.providers.base import Target
from outcrop.providers.http11 import Client, ProtocolError
from outcrop.providers.openai import OpenAIProvider
from outcrop.runtime.converse import chat_request

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


async def _serve(handler: Handler) -> tuple[asyncio.Server, str, list[int]]:
    """A server on a free port; the list counts the connections it accepted."""
    accepted: list[int] = []

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(counted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1/chat/completions", accepted


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return await reader.readexactly(length)


def _answering(answer: bytes) -> Handler:
    """A handler that gives every request on a connection the same ``answer``, until the client leaves."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await _read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(answer)

    return handler


def test_keep_alive_reuses_one_connection_for_sequential_requests() -> None:
    async def main() -> None:
        server, url, accepted = await _serve(_answering(OK))
        client = Client()
        for _ in range(3):
            r = await client.post(url, b'{"a":1}', {"content-type": "application/json"})
            assert (r.status, await r.read()) == (200, b"{}")
            await r.close()
        await client.aclose()
        server.close()
        assert len(accepted) == 1

    asyncio.run(main())


def test_a_reused_connection_closed_before_any_answer_is_retried_once_on_a_new_one() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(OK)
        await writer.drain()
        await reader.read(1)  # the next request starts, and the server closes without answering (idle timeout)

    async def main() -> None:
        server, url, accepted = await _serve(handler)
        client = Client()
        for _ in range(2):
            r = await client.post(url, b"{}", {})
            assert (r.status, await r.read()) == (200, b"{}")
            await r.close()
            await asyncio.sleep(0.05)
        await client.aclose()
        server.close()
        assert len(accepted) == 2

    asyncio.run(main())


def test_chunked_body_with_trailers_is_read_whole_and_a_cut_body_is_a_protocol_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nab")
        await writer.drain()
        if body == b"cut":
            return
        await asyncio.sleep(0.01)
        writer.write(b"c\r\n4;ext=1\r\ndefg\r\n0\r\nx-trailer: 1\r\n\r\n")
        await writer.drain()

    async def main() -> None:
        server, url, _ = await _serve(handler)
        client = Client()
        r = await client.post(url, b"whole", {})
        assert await r.read() == b"abcdefg"
        await r.close()
        r = await client.post(url, b"cut", {})
        with pytest.raises(ProtocolError):
            await r.read()
        await r.close()
        await client.aclose()
        server.close()

    asyncio.run(main())



def test_a_body_of_known_length_is_read_across_writes_and_one_cut_short_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                body = await _read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nabc")
            await writer.drain()
            if body == b"cut":
                return  # closes after 3 of the 7 bytes
            await asyncio.sleep(0.01)
            writer.write(b"defg")

    async def main() -> None:
        server, url, accepted = await _serve(handler)
        client = Client()
        r = await client.post(url, b"whole", {})
        assert await r.read() == b"abcdefg"
        await r.close()
        r = await client.post(url, b"cut", {})  # the same connection, kept alive
        with pytest.raises(ProtocolError, match="4 bytes before the end"):
            await r.read()
        await r.close()
        r = await client.post(url, b"whole", {})  # a new connection: the cut one was not pooled
        assert await r.read() == b"abcdefg"
        await r.close()
        await client.aclose()
        server.close()
        assert len(accepted) == 2

    asyncio.run(main())

def test_a_stream_that_stalls_times_out_but_a_slow_consumer_does_not() -> None:
    event = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
    chunk = f"{len(event):x}\r\n".encode() + event + b"\r\n"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(5)  # then nothing

    async def main() -> None:
        server, url, _ = await _serve(handler)
        provider = OpenAIProvider()
        deployment = Deployment(backend="openai", url=url.removesuffix("/chat/completions"), timeout_seconds=0.5)
        request = chat_request({"messages": [{"role": "user", "content": [{"text": "x"}]}]})
        seen: list[str] = []
        with pytest.raises(ModelTimeout):
            async for e in provider.chat_stream(Target("us-east-1", "m", deployment), request):
                seen.append(type(e).__name__)
                await asyncio.sleep(0.3)  # longer in all than the timeout, but none of it waiting on the backend
        # 4 x 0.3 s in the consumer is past the 0.5 s timeout: only the stall after the second event counts.
        assert seen == ["MessageStart", "BlockStart", "BlockDelta", "BlockDelta"]
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        await provider.close()
        server.close()

    asyncio.run(main())


def test_a_finished_stream_leaves_no_reference_cycle() -> None:
    """Its timer, task and closures are freed as it ends (see tests/unit/test_no_garbage_cycles.py for why)."""
    events = (b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
              b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
    answer = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: "
              + str(len(events)).encode() + b"\r\n\r\n" + events)

    async def main() -> list[str]:
        server, url, _ = await _serve(_answering(answer))
        provider = OpenAIProvider()
        deployment = Deployment(backend="openai", url=url.removesuffix("/chat/completions"), timeout_seconds=5)
        request = chat_request({"messages": [{"role": "user", "content": [{"text": "x"}]}]})

        async def one() -> None:
            async for _ in provider.chat_stream(Target("us-east-1", "m", deployment), request):
                pass

        try:
            garbage = await garbage_after(one, 5)
        finally:
            await provider.close()
            server.close()
        return [f"{type(o).__qualname__} {getattr(o, '__qualname__', '')}" for o in garbage
                if "openai" in getattr(getattr(o, "__code__", None), "co_filename", "")
                or type(o).__module__.startswith("outcrop.")]

    assert asyncio.run(main()) == []


def test_a_large_body_read_slowly_arrives_whole_with_reading_paused_meanwhile() -> None:
    """Past the high-water mark the client stops reading the socket until the consumer catches up."""
    line = b"x" * 1023 + b"\n"
    lines = 4096  # 4 MiB: more than the high-water mark

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n" % (len(line) * lines))
        for _ in range(lines // 64):
            writer.write(line * 64)
            await writer.drain()

    async def main() -> None:
        server, url, _ = await _serve(handler)
        client = Client()
        r = await client.post(url, b"{}", {})
        got = 0
        paused_seen = False
        async for text in r.lines():
            assert text == "x" * 1023
            got += 1
            conn = r._conn
            paused_seen = paused_seen or bool(conn is not None and conn._paused)
            if got % 512 == 0:
                await asyncio.sleep(0.05)  # a slow consumer: the server's writes pile up meanwhile
        await r.close()
        assert got == lines and paused_seen
        await client.aclose()
        server.close()

    asyncio.run(main())


def test_a_connection_with_unexpected_bytes_after_the_answer_is_not_reused() -> None:
    async def main() -> None:
        # More than the answer: the next answer would start with the extra bytes.
        server, url, accepted = await _serve(_answering(OK + b"garbage"))
        client = Client()
        for _ in range(2):
            r = await client.post(url, b"{}", {})
            assert (r.status, await r.read()) == (200, b"{}")
            await asyncio.sleep(0.05)  # the extra bytes arrive while the connection is idle
            await r.close()
        r = await client.post(url, b"{}", {})
        assert r.status == 200
        await r.close()
        assert len(accepted) == 3
        await client.aclose()
        server.close()

    asyncio.run(main())
