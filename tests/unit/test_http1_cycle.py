"""outcrop's HTTP/1.1 request cycle (``outcrop.server.http1``) on a real event loop, with a recording
transport: what goes on the wire for each ASGI answer, the keep-alive timeout, and apps that misbehave."""

from __future__ import annotations

import asyncio
import functools
import json
from types import SimpleNamespace
from typing import Any

import pytest
import uvloop

from outcrop.server.http1 import HTTP1, Limits


def on_uvloop(test: Any) -> Any:
    """Run an async test on a fresh uvloop event loop (the loop ``outcrop serve`` runs)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> Any:
        loop = uvloop.new_event_loop()
        try:
            return loop.run_until_complete(test(*args, **kwargs))
        finally:
            loop.close()

    return run


LIMITS = Limits(max_header_bytes=16384, header_read_timeout=5.0, keep_alive_timeout=0.2)


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.reading = True

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8643), "peername": ("127.0.0.1", 50000)}.get(name, default)


def connect(app: Any, limits: Limits = LIMITS) -> tuple[HTTP1, Transport, SimpleNamespace]:
    state = SimpleNamespace(connections=set(), tasks=set(), default_headers=[(b"date", b"today")], total_requests=0)
    config = SimpleNamespace(loaded=True, loaded_app=app)
    protocol = HTTP1(config, state, {}, asyncio.get_running_loop(), limits=limits)
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport, state


def answer(body: bytes = b'{"ok":true}', status: int = 200, headers: list[tuple[bytes, bytes]] | None = None):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": status,
                    "headers": headers if headers is not None else
                    [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    return app


async def settle(state: SimpleNamespace) -> None:
    for _ in range(50):
        await asyncio.sleep(0)
        if not state.tasks:
            return


GET = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"


@on_uvloop
async def test_a_unary_answer_is_one_write_head_and_body_together():
    protocol, transport, state = connect(answer())
    protocol.data_received(GET)
    await settle(state)
    assert len(transport.writes) == 1
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\ndate: today\r\n")
    assert b"content-length: 11" in head and body == b'{"ok":true}'
    assert not transport.closed and state.total_requests == 1


@on_uvloop
async def test_keep_alive_closes_an_idle_connection_after_its_last_answer():
    protocol, transport, state = connect(answer())
    protocol.data_received(GET)
    await settle(state)
    await asyncio.sleep(0.12)
    protocol.data_received(GET)  # a second request before the timeout: the clock starts again
    await settle(state)
    await asyncio.sleep(0.12)
    assert not transport.closed  # 0.24 s since the first answer, 0.12 s since the last
    await asyncio.sleep(0.2)
    assert transport.closed


@on_uvloop
async def test_keep_alive_never_closes_a_connection_while_its_request_is_answered():
    release = asyncio.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await release.wait()
        await answer()(scope, receive, send)

    protocol, transport, state = connect(answer())
    protocol.data_received(GET)
    await settle(state)
    protocol.app = slow
    protocol.data_received(GET)
    await asyncio.sleep(0.45)  # past the timeout, counted from the first answer
    assert not transport.closed
    release.set()
    await settle(state)
    assert len(transport.writes) == 2 and not transport.closed


@on_uvloop
async def test_head_request_gets_the_head_only():
    protocol, transport, state = connect(answer())
    protocol.data_received(b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n")
    await settle(state)
    assert transport.writes[0].endswith(b"\r\n\r\n") and b"content-length: 11" in transport.writes[0]


@on_uvloop
async def test_an_answer_without_length_is_chunked():
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"de"})

    protocol, transport, state = connect(app)
    protocol.data_received(GET)
    await settle(state)
    wire = b"".join(transport.writes)
    assert b"transfer-encoding: chunked" in wire
    assert wire.endswith(b"\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")


@on_uvloop
@pytest.mark.parametrize("case", ["raises", "returns-silently", "bad-header"])
async def test_an_app_that_fails_before_answering_gets_an_aws_shaped_500(case):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if case == "raises":
            raise ValueError("boom")
        if case == "bad-header":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"b\r\nx-injected: 1")]})

    protocol, transport, state = connect(app)
    protocol.data_received(GET)
    await settle(state)
    head, _, body = b"".join(transport.writes).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500")
    assert b"x-amzn-errortype: InternalServerException" in head and b"x-injected" not in head
    assert json.loads(body)["message"]
    assert transport.closed and not state.tasks


@on_uvloop
async def test_receive_reports_the_client_leaving_after_the_body():
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append((await receive())["type"])
        seen.append((await receive())["type"])  # waits until the client leaves

    protocol, _, state = connect(app)
    protocol.data_received(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
    await asyncio.sleep(0.01)
    assert seen == ["http.request"]
    protocol.connection_lost(None)
    await settle(state)
    assert seen == ["http.request", "http.disconnect"]


@on_uvloop
async def test_pipelined_requests_behind_a_long_stream_are_not_read_further():
    """While an answer streams (its app waiting in receive() for the client to leave), a pipelined request
    behind it stops the reading until it is answered, whatever the streaming app's receive() does."""
    stop = asyncio.Event()

    async def stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/quick":
            await answer()(scope, receive, send)
            return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        waiting = asyncio.ensure_future(receive())  # the client's leaving, as outcrop's streams watch for
        await stop.wait()
        waiting.cancel()
        await send({"type": "http.response.body", "body": b""})

    protocol, transport, state = connect(stream)
    protocol.data_received(b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\nGET /quick HTTP/1.1\r\nHost: a\r\n\r\n")
    await asyncio.sleep(0.05)
    assert len(protocol.pipeline) == 1
    assert not transport.reading  # paused behind the stream, and still paused after its receive()
    stop.set()
    await settle(state)
    await asyncio.sleep(0.01)
    wire = b"".join(transport.writes)
    assert wire.count(b"HTTP/1.1 200") == 2 and wire.endswith(b'{"ok":true}')
    assert transport.reading and not protocol.pipeline


@on_uvloop
async def test_a_client_that_shuts_its_side_after_its_requests_still_gets_every_answer():
    release = asyncio.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await release.wait()
        await answer()(scope, receive, send)

    protocol, transport, state = connect(slow)
    protocol.data_received(GET + GET)
    assert protocol.eof_received() is True  # kept open: two answers are due
    release.set()
    await settle(state)
    await asyncio.sleep(0.01)
    assert b"".join(transport.writes).count(b"HTTP/1.1 200") == 2
    assert transport.closed


@on_uvloop
async def test_a_client_that_shuts_its_side_mid_request_is_closed_at_once():
    protocol, transport, state = connect(answer())
    protocol.data_received(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    assert protocol.eof_received() is False  # the transport closes: nothing can be answered
    protocol.connection_lost(None)
    await settle(state)
    assert b"".join(transport.writes) == b""
