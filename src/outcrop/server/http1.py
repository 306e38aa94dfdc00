"""HTTP/1.1 connections: uvicorn's httptools protocol, with the limits a public endpoint needs, and h2c.

uvicorn parses HTTP/1.1 with httptools (llhttp) on the event loop's own thread, so a request reaches the
app with no hand-off between threads. Three things are added here:

- **h2c with prior knowledge.** A connection whose first bytes are HTTP/2's connection preface is handed
  to ``outcrop.server.h2c`` (the JS SDK v3's runtime client opens h2c against an ``http://`` endpoint).
- **A header size limit** (``max_header_bytes``): the request line and headers, counted as httptools
  reports them and, as a backstop against one endless header, as bytes received before the head ends.
  Over the limit: 431 and the connection is closed.
- **A header read timeout** (``header_read_timeout_seconds``): from the connection's start, or from the
  first piece of each later request that does not hold its whole head, to the end of its head. A client trickling its head (slow loris)
  gets 408 and the connection is closed. Between requests, uvicorn's keep-alive timeout applies.

Both answers are AWS-shaped errors (``x-amzn-ErrorType`` and a JSON ``message``), as every other
refusal of outcrop's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
LINGER_SECONDS = 2.0  # after answering a request whose body was still arriving, before closing


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


class _Transport:
    """The transport as uvicorn's request cycle sees it, with two changes.

    - An answer's head is held until its first body bytes, and both go out in one write: one system call
      per answer instead of two (ASGI lets a server delay the head until the first body message). A
      ``100 Continue`` is never held; a head whose answer ends with no body (HEAD) goes out when it ends.
    - ``close()`` lingers when the request is still arriving: the answer was given before the whole body
      (a 404 or 413 needs none of it), and closing a socket with unread data sends a reset, which can make
      the client's kernel drop the answer before the client reads it. So the write side is shut (FIN
      after the answer), what still arrives is read and dropped, and the socket is closed once the client
      closes its side or ``LINGER_SECONDS`` have passed.
    """

    __slots__ = ("_head", "_head_of", "_protocol", "_transport")

    def __init__(self, transport: asyncio.Transport, protocol: HTTP1) -> None:
        self._transport = transport
        self._protocol = protocol
        self._head: bytes | None = None
        self._head_of: object = None  # the request cycle whose head was held (one per cycle)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def write(self, data: bytes) -> None:
        cycle = self._protocol.cycle
        if self._head is not None:
            data, self._head = self._head + data, None
        elif (cycle is not None and cycle is not self._head_of and cycle.response_started
              and not cycle.response_complete and data.startswith(b"HTTP/1.1 ") and data[9:10] != b"1"):
            self._head, self._head_of = data, cycle
            return
        self._transport.write(data)

    def flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._protocol.close_lingering()


class HTTP1(HttpToolsProtocol):
    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *, limits: Limits) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._sniffing = b""  # the first bytes, while they may still be HTTP/2's preface
        self._sniffed = False
        self._in_head = True
        self._head = 0  # bytes of the request line and headers, as parsed
        self._raw = 0  # bytes received while in a head (the backstop)
        self._head_timer: asyncio.TimerHandle | None = None
        self._raw_transport: asyncio.Transport | None = None
        self._message_complete = True
        self._lingering = False
        self._upgrade_left = 0  # body bytes still due of a request whose Upgrade was not taken

    # -- connection --------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._raw_transport = transport
        super().connection_made(_Transport(transport, self))  # type: ignore[arg-type]
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

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
        self._unset_keepalive_if_required()
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
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._in_head:
            if self._raw > self.limits.max_header_bytes and not self.transport.is_closing():
                self._refuse_head()
            elif self._head_timer is None:
                self._arm_head_timer()  # a head in several pieces (most arrive whole: no timer for them)

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
        part = data[: self._upgrade_left]
        self._upgrade_left -= len(part)
        if part and not cycle.response_complete:
            cycle.body += part
        if not self._upgrade_left:
            cycle.more_body = False
            self._message_complete = True
        cycle.message_event.set()
        if not self._upgrade_left and len(data) > len(part):
            self.data_received(data[len(part):])  # the next request

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
        self._unset_keepalive_if_required()
        self.connections.discard(self)
        protocol = H2C(self.app, self.server_state, self.loop, self.limits, self.server, self.client)
        transport = self._raw_transport
        assert transport is not None
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(received)

    # -- parser callbacks --------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._message_complete = False
        self._in_head = True
        self._head = 0

    def on_url(self, url: bytes) -> None:
        self._head += len(url)
        if self._head > self.limits.max_header_bytes:
            raise _HeadTooLarge
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head += len(name) + len(value) + 4
        if self._head > self.limits.max_header_bytes:
            raise _HeadTooLarge
        super().on_header(name, value)

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]  # a held head whose answer had no body
        super().on_response_complete()

    def on_message_complete(self) -> None:
        self._message_complete = True
        super().on_message_complete()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._raw = 0
        self._cancel_head_timer()
        super().on_headers_complete()

    def close_lingering(self) -> None:
        transport = self._raw_transport
        assert transport is not None
        if self._message_complete or self._lingering or transport.is_closing() or not transport.can_write_eof():
            transport.close()
            return
        self._lingering = True
        self._cancel_head_timer()
        transport.write_eof()
        transport.resume_reading()
        self.loop.call_later(LINGER_SECONDS, transport.close)

    # -- limits ------------------------------------------------------------------------------------
    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.header_read_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if not self._sniffed and not self._sniffing:
            self.transport.close()  # nothing at all was sent: there is no one to answer
            return
        seconds = f"{self.limits.header_read_timeout:g}"
        self.transport.write(refusal(408, b"Request Timeout", b"RequestTimeoutException",
                                     f"The request headers were not received within {seconds} seconds."))
        self.transport.close()

    def _refuse_head(self) -> None:
        self._cancel_head_timer()
        limit = self.limits.max_header_bytes
        self.transport.write(refusal(
            431, b"Request Header Fields Too Large", b"RequestHeaderFieldsTooLargeException",
            f"The request line and headers are larger than the {limit} bytes this server accepts "
            "(max_header_bytes).",
        ))
        self.transport.close()

