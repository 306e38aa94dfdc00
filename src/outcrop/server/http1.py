"""HTTP/1.1 connections: outcrop's own request cycle on httptools (llhttp), with the limits a public
endpoint needs, and h2c.

uvicorn runs the server (sockets, workers, signals, graceful shutdown, the lifespan); each connection is
this protocol, which parses with httptools on the event loop's own thread and calls the ASGI app. It used
to be uvicorn's own ``HttpToolsProtocol`` and its ``RequestResponseCycle``, with additions. Under load
(``bench/runtime``, 64 concurrent Converse calls) the event loop's thread is outcrop's bottleneck, and
uvicorn's cycle spent a tenth of it: the path percent-decoded again for every request (an application
profile's ARN holds a dozen escapes), an ``asyncio.Event`` and a task callback per request, the answer's
head validated and written apart from its body. This cycle keeps the same ASGI contract and does less:

- **The answer's head and its first body bytes go out in one write** (one system call per unary answer).
  ASGI lets a server hold the head until the first body message. ``100 Continue`` is never held.
- **A body that came with the head is handed over at once**: ``receive()`` waits (on a future made only
  then) only for bytes that are still to come, or, once the body is read, for the client to leave.
- **The decoded path is remembered** per raw path (bounded), as is the route (``wire.model``).

Added to HTTP/1.1 besides:

- **h2c with prior knowledge.** A connection whose first bytes are HTTP/2's connection preface is handed
  to ``outcrop.server.h2c`` (the JS SDK v3's runtime client opens h2c against an ``http://`` endpoint).
- **A header size limit** (``max_header_bytes``): the request line and headers, counted as httptools
  reports them and, as a backstop against one endless header, as bytes received before the head ends.
  Over the limit: 431 and the connection is closed.
- **A header read timeout** (``header_read_timeout_seconds``): from the connection's start, or from the
  first piece of each later request that does not hold its whole head, to the end of its head. A client
  trickling its head (slow loris) gets 408 and the connection is closed. Between requests, the keep-alive
  timeout applies.
- **Closing lingers while a request is still arriving** (an answer given before the body: a 404 or a 413
  needs none of it). Closing a socket with unread data sends a reset, which can make the client's kernel
  drop the answer before the client reads it. So the write side is shut (FIN after the answer), what
  still arrives is read and dropped, and the socket is closed once the client closes its side or
  ``LINGER_SECONDS`` have passed.

Every refusal (400, 408, 431, 500) is AWS-shaped (``x-amzn-ErrorType`` and a JSON ``message``), as every
other refusal of outcrop's. Pipelined requests are answered in order, one at a time.
"""

from __future__ import annotations

import asyncio
import functools
import http
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httptools
from uvicorn.protocols.utils import get_local_addr, get_remote_addr, is_ssl

log = logging.getLogger("outcrop.server")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
LINGER_SECONDS = 2.0  # after answering a request whose body was still arriving, before closing
HIGH_WATER = 65536  # request body bytes held for the app before the connection stops reading
_PATH_CACHE_MAX = 400  # raw paths up to this long have their decoded form remembered



def _status_line(code: int) -> bytes:
    try:
        phrase = http.HTTPStatus(code).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (code, phrase)


STATUS_LINE = {code: _status_line(code) for code in range(100, 600)}
# An answer's header names must be tokens, and its values free of control characters but tab (RFC 9110
# §5.1, §5.5): ``name.translate(None, _NAME_OK)`` is empty when every byte of it is allowed.
_NAME_OK = bytes(c for c in range(33, 127) if chr(c) not in '()<>@,;:\\"/[]?={} \t')
_VALUE_OK = bytes(c for c in range(256) if c == 9 or 32 <= c != 127)
_DISCONNECT = {"type": "http.disconnect"}
_ASGI = {"version": "3.0", "spec_version": "2.3"}


@dataclass(frozen=True)
class Limits:
    """What every connection is held to (from outcrop's config; picklable for uvicorn's worker processes)."""

    max_header_bytes: int
    header_read_timeout: float
    keep_alive_timeout: float


class _HeadTooLarge(Exception):
    pass


def refusal(status: int, reason: bytes, error_type: bytes, message: str) -> bytes:
    """A complete HTTP/1.1 error answer in AWS's shape, closing the connection."""
    body = b'{"message":"' + message.encode() + b'"}'
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\nx-amzn-errortype: %s\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % (status, reason, error_type, len(body))
    ) + body


@functools.lru_cache(maxsize=4096)
def _remembered_path(raw: bytes) -> str:
    return _decoded_path(raw)


def _decoded_path(raw: bytes) -> str:
    """ASGI's ``path``: the raw path percent-decoded (UTF-8). Not ASCII: a ``UnicodeDecodeError``, a 400."""
    path = raw.decode("ascii")
    return unquote(path) if "%" in path else path


class Cycle:
    """One request and its answer: the ASGI ``receive`` and ``send`` of one call of the app."""

    __slots__ = ("chunked", "chunks", "delivered", "disconnected", "expected", "head", "is_head", "keep_alive",
                 "more_body", "protocol", "response_complete", "response_started", "scope", "size", "task",
                 "waiter", "waiting_for_100")

    def __init__(self, protocol: HTTP1, scope: dict[str, Any], keep_alive: bool, expect_100: bool) -> None:
        self.protocol = protocol
        self.scope = scope
        self.keep_alive = keep_alive
        self.waiting_for_100 = expect_100
        self.is_head = scope["method"] == "HEAD"
        self.disconnected = False
        # the request's body: chunks not yet handed to the app, whether more is to come, whether the last
        # ``http.request`` message was handed over
        self.chunks: list[bytes] = []
        self.size = 0
        self.more_body = True
        self.delivered = False
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None  # the task running the app on this request
        # the answer
        self.response_started = False
        self.response_complete = False
        self.head: bytes | None = None  # held until the first body message
        self.chunked = False
        self.expected = 0  # body bytes still due by Content-Length

    def body_in_hand(self) -> bytes | None:
        """The whole request body, when all of it has arrived and none of it was handed over yet (else
        None): the app takes it without ``receive()``, and without a time limit on reading it. Offered
        to the app as the scope's ``outcrop.body`` extension."""
        if self.more_body or self.delivered or self.disconnected:
            return None
        self.delivered = True
        return self._take()

    def add(self, data: bytes) -> int:
        """Body bytes received for the app; how many it now holds unread."""
        self.chunks.append(data)
        self.size += len(data)
        return self.size

    def _take(self) -> bytes:
        """The body bytes received and not yet handed over (the connection reads on, room being made)."""
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self.size = 0
        self.protocol.resume_reading()
        return body

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def run(self, app: Any) -> None:
        try:
            result = await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            log.error("Exception in ASGI application", exc_info=exc)
            if not self.response_started:
                self._send_500()
            else:
                self.protocol.close()
        else:
            if result is not None:
                log.error("ASGI callable should return None, but returned %r.", result)
                self.protocol.close()
            elif not self.response_started and not self.disconnected:
                log.error("ASGI callable returned without starting response.")
                self._send_500()
            elif not self.response_complete and not self.disconnected:
                log.error("ASGI callable returned without completing response.")
                self.protocol.close()
        finally:
            self.protocol.server_state.tasks.discard(self.task)
            # The scope's extension is a method of this cycle: dropped, the request's objects are freed as soon
            # as it is answered, not left as a reference cycle for the garbage collector (~24 objects each).
            self.scope["extensions"] = None

    def _send_500(self) -> None:
        if self.disconnected:
            return
        self.response_started = self.response_complete = True
        self.protocol.transport.write(refusal(500, b"Internal Server Error", b"InternalServerException",
                                              "An internal error occurred."))
        self.protocol.close()
        self.protocol.response_done()

    # -- ASGI ------------------------------------------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        protocol = self.protocol
        if self.waiting_for_100:
            self.waiting_for_100 = False
            if not protocol.transport.is_closing():
                protocol.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while True:
            if self.disconnected or self.response_complete:
                return _DISCONNECT
            if self.chunks or not (self.more_body or self.delivered):
                more = self.more_body
                if not more:
                    self.delivered = True
                return {"type": "http.request", "body": self._take(), "more_body": more}
            # Nothing in hand: the rest of the body, or (all of it handed over) the client's leaving.
            protocol.resume_reading()
            self.waiter = protocol.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    async def send(self, message: dict[str, Any]) -> None:
        protocol = self.protocol
        if protocol.write_paused and not self.disconnected:
            await protocol.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{kind}'.")
            self._start(message["status"], message.get("headers", ()))
            return
        if self.response_complete:
            raise RuntimeError(f"Unexpected ASGI message '{kind}' sent, after response already completed.")
        if kind != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{kind}'.")
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if self.is_head:
            data = b""
            self.expected = 0
        elif self.chunked:
            data = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            if not more:
                data += b"0\r\n\r\n"
        else:
            if len(body) > self.expected:
                raise RuntimeError("Response content longer than Content-Length")
            self.expected -= len(body)
            data = body
        head = self.head
        if head is not None:
            self.head = None
            data = head + data
        if data:
            protocol.transport.write(data)
        if not more:
            if self.expected:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.wake()
            if not self.keep_alive:
                protocol.close()
            protocol.response_done()

    def _start(self, status: int, headers: Any) -> None:
        pairs = [*self.protocol.server_state.default_headers, *headers]
        names = [name.lower() for name, _ in pairs]
        values = [value for _, value in pairs]
        if b"".join(names).translate(None, _NAME_OK) or not all(names):
            raise RuntimeError("Invalid HTTP header name.")
        if b"".join(values).translate(None, _VALUE_OK):
            raise RuntimeError("Invalid HTTP header value.")
        self.response_started = True  # after the checks: an answer refused by them becomes a 500
        self.waiting_for_100 = False
        lines = [STATUS_LINE[status], *[name + b": " + value + b"\r\n" for name, value in zip(names, values, strict=True)]]
        has_length = b"content-length" in names
        if has_length:
            self.expected = int(values[names.index(b"content-length")])
        elif b"transfer-encoding" in names:
            self.chunked = values[names.index(b"transfer-encoding")].lower() == b"chunked"
        if b"connection" in names and b"close" in [
                token.strip() for token in values[names.index(b"connection")].lower().split(b",")]:
            self.keep_alive = False
        elif not self.keep_alive:
            lines.append(b"connection: close\r\n")
        if not has_length and not self.chunked and not self.is_head and status not in (204, 304):
            self.chunked = True  # neither Content-Length nor Transfer-Encoding: chunked
            lines.append(b"transfer-encoding: chunked\r\n")
        lines.append(b"\r\n")
        self.head = b"".join(lines)


class HTTP1(asyncio.Protocol):
    """One HTTP/1.1 connection (or, from its first bytes, an h2c one), under uvicorn's server."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *, limits: Limits | None = None) -> None:
        if limits is None:  # run as ``uvicorn --http outcrop.server.http1:HTTP1`` (the benchmarks' floor)
            from outcrop.config import Config
            from outcrop.server import limits as configured

            limits = configured(Config())
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.limits = limits
        self.parser = httptools.HttpRequestParser(self)
        # Answer the first of pipelined requests even when the client closed its side after sending them.
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.cycle: Cycle | None = None
        self.pipeline: deque[Cycle] = deque()  # requests parsed while an earlier one is being answered
        # the request being parsed
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_100 = False
        self._head = 0  # bytes of the request line and headers, as parsed
        self._raw = 0  # bytes received while in a head (the backstop)
        self._in_head = True
        self._message_complete = True
        # the connection
        self._sniffing = b""  # the first bytes, while they may still be HTTP/2's preface
        self._sniffed = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._answered_at = 0.0  # loop time of the last answer (the keep-alive timeout counts from it)
        self._lingering = False
        self._eof = False  # the client shut its sending side; close once its requests are answered
        self._upgrade_left = 0  # body bytes still due of a request whose Upgrade was not taken
        self._read_paused = False
        self.write_paused = False
        self._writable: asyncio.Future[None] | None = None

    # -- connection ----------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.server_state.connections.add(self)
        self.transport = transport
        self.server = get_local_addr(transport)
        self.client = get_remote_addr(transport)
        self.scheme = "https" if is_ssl(transport) else "http"
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self._cancel_head_timer()
        self._cancel_idle_timer()
        cycle = self.cycle
        if cycle is not None:
            if not cycle.response_complete:
                cycle.disconnected = True
            cycle.wake()
        for queued in self.pipeline:
            queued.disconnected = True
        self.pipeline.clear()
        self.write_paused = False
        self._wake_writers()
        if exc is None:
            self.transport.close()

    def eof_received(self) -> bool:
        """The client shut its sending side (``shutdown(SHUT_WR)``, ``nc -N``). Requests it sent whole are
        still answered, pipelined ones too, and the connection closes after the last answer; a request cut
        short cannot be answered, and the connection closes now."""
        busy = (self.cycle is not None and not self.cycle.response_complete) or bool(self.pipeline)
        if busy and self._message_complete and not self._lingering:
            self._eof = True
            return True  # the transport stays open for the answers
        return False

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: an idle connection closes now, a busy one after its answer."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self.transport.close()
        else:
            cycle.keep_alive = False

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the rest of a request already answered, and the connection is closing
        if self._upgrade_left:
            self._upgrade_body(data)
            return
        if not self._sniffed:
            data = self._sniff(data)
            if not data:
                return
        if self._in_head:
            self._raw += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self._upgrade_ignored(data[e.args[0]:] if e.args else b"")
            return
        except httptools.HttpParserError as e:
            if isinstance(e.__cause__ or e.__context__, _HeadTooLarge):
                self._refuse_head()
            else:
                self._refuse(400, b"Bad Request", b"BadRequestException", "Invalid HTTP request received.")
            return
        if self._in_head:
            if self._raw > self.limits.max_header_bytes and not self.transport.is_closing():
                self._refuse_head()
            elif self._head_timer is None:
                self._arm_head_timer()  # a head in several pieces (most arrive whole: no timer for them)

    def close(self) -> None:
        """Close after the answer; linger first while the request is still arriving (the module's note)."""
        transport = self.transport
        if self._message_complete or self._lingering or transport.is_closing() or not transport.can_write_eof():
            transport.close()
            return
        self._lingering = True
        self._cancel_head_timer()
        transport.write_eof()
        self._read_paused = False
        transport.resume_reading()  # what still arrives is read and dropped
        self.loop.call_later(LINGER_SECONDS, transport.close)

    # -- flow control --------------------------------------------------------------------------------
    def pause_reading(self) -> None:
        if not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read again, unless pipelined requests wait: then nothing more is read until they are answered
        (a client pipelining behind a long stream cannot make the server hold more than one read of them)."""
        if self._read_paused and not self.pipeline:
            self._read_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writers()

    async def drain(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = self.loop.create_future()
        await self._writable

    def _wake_writers(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- requests ------------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.expect_100 = False
        self._message_complete = False
        self._in_head = True
        self._head = 0

    def on_url(self, url: bytes) -> None:
        self._head += len(url)
        if self._head > self.limits.max_header_bytes:
            raise _HeadTooLarge
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head += len(name) + len(value) + 4
        if self._head > self.limits.max_header_bytes:
            raise _HeadTooLarge
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100 = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._raw = 0
        if self._head_timer is not None:
            self._cancel_head_timer()
        parser = self.parser
        url = self.url
        if url[:1] == b"/" and b"#" not in url:
            raw_path, _, query = url.partition(b"?")
        else:  # absolute-form, or a fragment
            parsed = httptools.parse_url(url)
            raw_path, query = parsed.path, parsed.query or b""
        path = _remembered_path(raw_path) if len(raw_path) <= _PATH_CACHE_MAX else _decoded_path(raw_path)
        http_version = parser.get_http_version()
        scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": http_version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "root_path": "",
            "headers": self.headers,
            "state": self.app_state.copy(),
            "method": parser.get_method().decode("ascii"),
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
        }
        keep_alive = http_version != "1.0" and parser.should_keep_alive()
        cycle = Cycle(self, scope, keep_alive, self.expect_100)
        scope["extensions"] = {"outcrop.body": cycle.body_in_hand}
        earlier, self.cycle = self.cycle, cycle
        if earlier is None or earlier.response_complete:
            self._start(cycle)
        else:
            self.pause_reading()  # pipelined: answered when the one before it is
            self.pipeline.appendleft(cycle)

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return
        if cycle.add(body) > HIGH_WATER:
            self.pause_reading()
        cycle.wake()

    def on_message_complete(self) -> None:
        self._message_complete = True
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return
        cycle.more_body = False
        cycle.wake()

    def _start(self, cycle: Cycle) -> None:
        # Known to uvicorn's graceful shutdown, which waits for its tasks; the cycle leaves the set as it ends.
        cycle.task = self.loop.create_task(cycle.run(self.app))
        self.server_state.tasks.add(cycle.task)

    def response_done(self) -> None:
        """An answer went out: the next pipelined request, or the keep-alive timeout."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        if self.pipeline:
            self._start(self.pipeline.pop())
        elif self._eof:
            self.transport.close()  # every request the client sent is answered
            return
        self.resume_reading()  # when no more pipelined requests wait
        # One keep-alive timer per connection, armed once and looked at when it fires (not made and cancelled
        # for every answer): a connection idle since its last answer for the keep-alive timeout is closed.
        self._answered_at = self.loop.time()
        if self._idle_timer is None:
            self._idle_timer = self.loop.call_later(self.limits.keep_alive_timeout, self._idle_check)

    # -- Upgrade (not taken) -------------------------------------------------------------------------
    def _upgrade_ignored(self, rest: bytes) -> None:
        """No upgrade is served (no WebSocket, no h2c by ``Upgrade``): the request is answered over HTTP/1.1,
        as RFC 9110 §7.8 lets a server do. llhttp stops at the end of such a request's head and ends the
        message there, so its body (``curl --http2`` sends one with a POST) is handed to the app here."""
        cycle = self.cycle
        if cycle is None:
            return
        length = 0
        for name, value in self.headers:
            if name == b"content-length" and value.strip().isdigit():
                length = int(value)
            elif name == b"transfer-encoding":
                cycle.keep_alive = False  # a chunked body after an Upgrade: not read; the connection ends
        if length:
            self._message_complete = False
            cycle.more_body = True
            self._upgrade_left = length
            self._upgrade_body(rest)
        elif rest:
            self.data_received(rest)  # the next request

    def _upgrade_body(self, data: bytes) -> None:
        cycle = self.cycle
        assert cycle is not None
        part = data[: self._upgrade_left]
        self._upgrade_left -= len(part)
        if part and not cycle.response_complete:
            cycle.add(part)
        if not self._upgrade_left:
            cycle.more_body = False
            self._message_complete = True
        cycle.wake()
        if not self._upgrade_left and len(data) > len(part):
            self.data_received(data[len(part):])  # the next request

    # -- h2c -----------------------------------------------------------------------------------------
    def _sniff(self, data: bytes) -> bytes:
        """Hold the connection's first bytes until they are (or cannot be) HTTP/2's preface."""
        seen = self._sniffing + data
        if PREFACE.startswith(seen[: len(PREFACE)]):
            if len(seen) < len(PREFACE):
                self._sniffing = seen
                return b""
            self._to_h2c(seen)
            return b""
        self._sniffed, self._sniffing = True, b""
        return seen

    def _to_h2c(self, received: bytes) -> None:
        from outcrop.server.h2c import H2C

        self._cancel_head_timer()
        self._cancel_idle_timer()
        self.server_state.connections.discard(self)
        protocol = H2C(self.app, self.server_state, self.loop, self.limits, self.server, self.client)
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        protocol.data_received(received)

    # -- limits --------------------------------------------------------------------------------------
    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.header_read_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _idle_check(self) -> None:
        self._idle_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        busy = ((cycle is not None and not cycle.response_complete) or bool(self.pipeline)
                or not self._message_complete or self._head_timer is not None)
        left = self.limits.keep_alive_timeout - (self.loop.time() - self._answered_at)
        if busy or left > 0:
            self._idle_timer = self.loop.call_later(left if left > 0 and not busy else self.limits.keep_alive_timeout,
                                                    self._idle_check)
            return
        self.transport.close()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if not self._sniffed and not self._sniffing:
            self.transport.close()  # nothing at all was sent: there is no one to answer
            return
        seconds = f"{self.limits.header_read_timeout:g}"
        self._refuse(408, b"Request Timeout", b"RequestTimeoutException",
                     f"The request headers were not received within {seconds} seconds.")

    def _refuse_head(self) -> None:
        self._cancel_head_timer()
        limit = self.limits.max_header_bytes
        self._refuse(431, b"Request Header Fields Too Large", b"RequestHeaderFieldsTooLargeException",
                     f"The request line and headers are larger than the {limit} bytes this server accepts "
                     "(max_header_bytes).")

    def _refuse(self, status: int, reason: bytes, error_type: bytes, message: str) -> None:
        """An AWS-shaped error for a request the app never saw; the connection is closed."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if self._in_head or self._message_complete:
                # A later (pipelined) request is at fault while this one is still being answered: its
                # answer goes out, then the connection closes; what else arrives is dropped.
                cycle.keep_alive = False
                self._lingering = True
                self._cancel_head_timer()
                return
            # This request's own body is at fault: the app's answer, if it comes, goes nowhere.
            cycle.disconnected = True
            cycle.wake()
            if cycle.response_started:
                self.transport.close()  # mid-answer: no second answer can go out
                return
        self.transport.write(refusal(status, reason, error_type, message))
        self.transport.close()
