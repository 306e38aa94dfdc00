"""Cleartext HTTP/2 (h2c, prior knowledge) on the HTTP/1.1 port, for the ASGI app, with the ``h2`` library.

The JS SDK v3's ``BedrockRuntimeClient`` keeps ``NodeHttp2Handler`` as its default and opens h2c when
the endpoint is ``http://``. ``outcrop.server.http1`` sees HTTP/2's connection preface and hands the
connection here. Each stream is one ASGI request, run as its own task:

- the request body is handed to the app as it arrives, and the peer's flow-control window is opened
  only as the app takes it, so an app that does not read holds at most one window per stream;
- the answer's DATA frames respect the peer's windows (connection and stream) and frame size, and wait
  for its WINDOW_UPDATE; an event stream's frames are sent as the app sends them;
- ``:authority`` is given to the app as ``host`` (SigV4 signs it under that name);
- the header list is limited to ``max_header_bytes`` (SETTINGS_MAX_HEADER_LIST_SIZE, enforced while
  decoding), and at most ``MAX_STREAMS`` streams are open at once;
- a reset stream, or a closed connection, is ``http.disconnect`` to the app; a connection with no open
  stream for the keep-alive timeout gets GOAWAY and is closed, as is every connection at shutdown once
  its streams are done (new ones are refused meanwhile); a GOAWAY from the peer likewise lets its open
  streams finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import unquote

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes, _error_code_from_int
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import SettingCodes, Settings

from outcrop.server.http1 import Limits

log = logging.getLogger("outcrop.server")

MAX_STREAMS = 128
# Not sent over HTTP/2 (RFC 9113 §8.2.2); an ASGI app may still name them.
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})


class _Connection(H2Connection):
    """h2's connection, but a GOAWAY without an error leaves it open for the streams already begun.

    h2 moves to CLOSED on any GOAWAY, drops the frames it has queued and refuses to send again, so the
    peer's open streams could not be answered, though RFC 9113 §6.8 says they are to be. The JS SDK's
    NodeHttp2Handler sends GOAWAY as soon as an answer begins. (A private method of h2, pinned.)
    """

    def _receive_goaway_frame(self, frame: Any) -> tuple[list[Any], list[Event]]:
        if frame.error_code != 0:
            return super()._receive_goaway_frame(frame)
        event = ConnectionTerminated()
        event.error_code = _error_code_from_int(frame.error_code)
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


class _Stream:
    __slots__ = ("_event", "body", "closed", "ended", "id", "proto", "request_ended", "scope", "started",
                 "unacked")

    def __init__(self, proto: H2C, stream_id: int, scope: dict[str, Any]) -> None:
        self.proto = proto
        self.id = stream_id
        self.scope = scope
        self.body: list[bytes] = []
        self.unacked = 0  # flow-controlled bytes received, not yet taken by the app
        self.request_ended = False  # END_STREAM received
        self.ended = False  # the app was told the body ended
        self.started = False  # the answer's HEADERS were sent
        self.closed = False  # reset, answered to the end, or the connection is gone
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        self._event.clear()
        await self._event.wait()

    # -- ASGI ----------------------------------------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        while True:
            if self.body:
                data = self.body[0] if len(self.body) == 1 else b"".join(self.body)
                self.body.clear()
                self.proto.taken(self)
                return {"type": "http.request", "body": data, "more_body": not self.request_ended}
            if self.request_ended and not self.ended:
                self.ended = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.closed:
                return {"type": "http.disconnect"}
            await self.wait()

    async def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        kind = message["type"]
        if kind == "http.response.start":
            headers = [(b":status", str(message["status"]).encode())]
            for name, value in message.get("headers", ()):
                name = name.lower()
                if name not in _HOP_BY_HOP:
                    headers.append((name, value))
            self.started = True
            self.proto.send_headers(self, headers)
        elif kind == "http.response.body":
            if not self.started:
                raise RuntimeError("http.response.body before http.response.start")
            await self.proto.send_data(self, message.get("body", b""), not message.get("more_body", False))


class H2C(asyncio.Protocol):
    def __init__(self, app: Any, server_state: Any, loop: asyncio.AbstractEventLoop, limits: Limits,
                 server: tuple[str, int] | None, client: tuple[str, int] | None) -> None:
        self.app = app
        self.server_state = server_state
        self.loop = loop
        self.limits = limits
        self.server, self.client = server, client
        self.conn = _Connection(config=H2Configuration(client_side=False, header_encoding=None))
        self.conn.local_settings = Settings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
            SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_bytes,
        })
        # Enforced from the first HEADERS on, not only once the peer has acknowledged the setting.
        self.conn.decoder.max_header_list_size = limits.max_header_bytes
        self.streams: dict[int, _Stream] = {}
        self.transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._closing = False
        self._writable: asyncio.Future[None] | None = None

    # -- connection ----------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server_state.connections.add(self)
        self.conn.initiate_connection()
        self._flush()
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self._disarm_idle()
        for stream in self.streams.values():
            stream.closed = True
            stream.wake()
        self.streams.clear()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as e:  # a broken peer: say why (GOAWAY, if h2 queued one) and hang up
            log.debug("h2c: closing the connection: %s", e)
            self._flush()
            self._close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self._request(event.stream_id, event.headers)
            elif isinstance(event, DataReceived):
                stream = self.streams.get(event.stream_id)
                if stream is None or stream.closed:
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                else:
                    stream.body.append(event.data)
                    stream.unacked += event.flow_controlled_length
                    stream.wake()
            elif isinstance(event, StreamEnded):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.request_ended = True
                    stream.wake()
            elif isinstance(event, StreamReset):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    self._gone(stream)
            elif isinstance(event, WindowUpdated):
                for stream in (self.streams.values() if event.stream_id == 0 else
                               filter(None, [self.streams.get(event.stream_id)])):
                    stream.wake()
            elif isinstance(event, RemoteSettingsChanged):
                # A new SETTINGS_INITIAL_WINDOW_SIZE resizes every stream's window: senders look again.
                for stream in self.streams.values():
                    stream.wake()
            elif isinstance(event, ConnectionTerminated):
                # GOAWAY: the peer opens no new stream. Without an error, the streams it has open are still
                # answered (a client that closes its session once the answer begins, as the JS SDK's
                # NodeHttp2Handler does, still reads the whole event stream); then the connection closes.
                if event.error_code != ErrorCodes.NO_ERROR or not self.streams:
                    self._flush()
                    self._close()
                    return
                self._closing = True
        self._flush()

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def shutdown(self) -> None:
        """The server is stopping: new streams are refused, and once the open ones are answered, GOAWAY and
        close (h2 sends nothing after its own GOAWAY, so that waits for the last answer)."""
        self._closing = True
        if self.transport is None or self.transport.is_closing():
            return
        if not self.streams:
            self._goaway()

    # -- streams -------------------------------------------------------------------------------------
    def _request(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        if self._closing:  # shutting down: the client may retry it on a new connection
            with contextlib.suppress(StreamClosedError, ProtocolError):
                self.conn.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        self._disarm_idle()
        method = path = b""
        authority = None
        plain: list[tuple[bytes, bytes]] = []
        for name, value in headers:
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            elif not name.startswith(b":"):
                plain.append((name, value))
        if authority is not None and not any(name == b"host" for name, _ in plain):
            plain.insert(0, (b"host", authority))
        raw_path, _, query = path.partition(b"?")
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "2",
            "server": self.server, "client": self.client, "scheme": "http", "root_path": "",
            "method": method.decode("ascii", "replace"), "path": unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path, "query_string": query, "headers": plain,
        }
        stream = _Stream(self, stream_id, scope)
        self.streams[stream_id] = stream
        task = self.loop.create_task(self._run(stream))
        self.server_state.tasks.add(task)
        task.add_done_callback(self.server_state.tasks.discard)

    async def _run(self, stream: _Stream) -> None:
        try:
            await self.app(stream.scope, stream.receive, stream.send)
        except Exception:
            log.exception("h2c: the app failed on stream %d", stream.id)
            if not stream.started and not stream.closed:
                self.send_headers(stream, [(b":status", b"500"), (b"content-length", b"0")], end=True)
        finally:
            if not stream.closed:  # the app returned without ending its answer
                self._reset(stream, ErrorCodes.INTERNAL_ERROR)

    def taken(self, stream: _Stream) -> None:
        """The app took the stream's body so far: open the peer's windows by as much."""
        if not stream.closed:
            self._ack(stream)

    def _ack(self, stream: _Stream) -> None:
        if stream.unacked:
            self.conn.acknowledge_received_data(stream.unacked, stream.id)
            stream.unacked = 0
            self._flush()

    def send_headers(self, stream: _Stream, headers: list[tuple[bytes, bytes]], end: bool = False) -> None:
        try:
            self.conn.send_headers(stream.id, headers, end_stream=end)
        except (StreamClosedError, ProtocolError):
            self._gone(stream)
            return
        self._flush()
        if end:
            self._done(stream)

    async def send_data(self, stream: _Stream, data: bytes, end: bool) -> None:
        while data:
            if stream.closed:
                return
            size = min(len(data), self.conn.local_flow_control_window(stream.id), self.conn.max_outbound_frame_size)
            if size <= 0:
                await stream.wait()  # a WINDOW_UPDATE, a reset or the connection's end wakes it
                continue
            try:
                self.conn.send_data(stream.id, data[:size])
            except (StreamClosedError, ProtocolError):
                self._gone(stream)
                return
            data = data[size:]
            self._flush()
            if self._writable is not None and not self._writable.done():
                await self._writable
        if end and not stream.closed:
            try:
                self.conn.end_stream(stream.id)
            except (StreamClosedError, ProtocolError):
                self._gone(stream)
                return
            self._flush()
            self._done(stream)

    def _done(self, stream: _Stream) -> None:
        """The answer has been sent to its end."""
        self._ack(stream)  # what the app never read still counts against the connection's window
        if not stream.request_ended:  # the app answered without reading the whole request
            self._reset(stream, ErrorCodes.NO_ERROR)
        else:
            self._gone(stream)

    def _reset(self, stream: _Stream, code: ErrorCodes) -> None:
        with contextlib.suppress(StreamClosedError, ProtocolError):
            self.conn.reset_stream(stream.id, code)
        self._flush()
        self._gone(stream)

    def _gone(self, stream: _Stream) -> None:
        """The stream is over for this side: the app is told, and the connection forgets it."""
        stream.closed = True
        stream.wake()
        self.streams.pop(stream.id, None)
        self._maybe_idle()

    # -- plumbing ------------------------------------------------------------------------------------
    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _maybe_idle(self) -> None:
        if self.streams:
            return
        if self._closing:
            self._goaway()
        else:
            self._arm_idle()

    def _arm_idle(self) -> None:
        self._disarm_idle()
        self._idle = self.loop.call_later(self.limits.keep_alive_timeout, self._idle_timeout)

    def _disarm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _idle_timeout(self) -> None:
        self._idle = None
        if self.streams or self.transport is None or self.transport.is_closing():
            return
        self._goaway()

    def _goaway(self) -> None:
        with contextlib.suppress(ProtocolError):
            self.conn.close_connection()
        self._flush()
        self._close()
