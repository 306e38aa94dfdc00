"""A small HTTP/1.1 client for the call outcrop makes on every invocation (the ``openai`` backend).

Why not httpx: on that path httpx, httpcore and anyio cost more CPU than all of outcrop's own work
(``bench/runtime``): each request scans every pooled connection (a ``select`` per idle connection to
see whether it expired), wraps the socket in several stream layers and runs h11's state machine; and
the default pool keeps at most 20 idle connections, so above 20 concurrent invocations connections
are opened and closed all the time. This client does only what a chat-completions call needs:

- keep-alive connections per origin (scheme, host, port), reused most-recent-first, with no cap of
  its own (the router's per-deployment ``max_concurrency`` is the cap);
- a request with a ``Content-Length`` body; a response with a ``Content-Length``, chunked or
  close-delimited body, read whole (``read``) or line by line (``lines``, for SSE);
- a connection goes back to the pool only after its response was read to the end without error;
- a reused connection that fails before any byte of the answer arrives (the server closed it while it
  was idle) is retried once on a new connection, as browsers and urllib3 do.

Errors: ``ConnectError`` (could not connect), ``ProtocolError`` (the connection failed or the answer
was malformed), and the builtin ``TimeoutError`` from the callers' time limits
(``outcrop.deadlines``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

__all__ = ["Client", "ConnectError", "HTTPError", "ProtocolError", "Response"]

MAX_HEAD_BYTES = 64 * 1024
READ_SIZE = 64 * 1024
HIGH_WATER = 1024 * 1024  # received and not yet read: reading pauses above this, resumes below LOW_WATER
LOW_WATER = 256 * 1024


class HTTPError(Exception):
    """A request failed below HTTP: no answer, or not a valid one."""


class ConnectError(HTTPError):
    pass


class ProtocolError(HTTPError):
    pass


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int
    authority: str  # the Host header


@lru_cache(maxsize=256)
def _split(url: str) -> tuple[_Origin, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectError(f"not an http(s) URL: {url}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Origin(parts.scheme, parts.hostname, port, parts.netloc.rsplit("@", 1)[-1]), target


class _Connection(asyncio.Protocol):
    """One connection: the bytes received so far, and the one coroutine (if any) waiting for more.

    A protocol rather than asyncio's streams: an answer that arrives in one piece (the usual unary one)
    wakes its caller once, and is then read from the buffer with no further wait or layer.
    """

    __slots__ = ("_loop", "_paused", "_waiter", "_writable", "buffer", "done", "error", "transport")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.done = False  # the server closed its side, or the connection is lost
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._paused = False

    # -- asyncio.Protocol --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.done = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.done = True
        self.error = exc
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- for the client ------------------------------------------------------------------------------
    def usable(self) -> bool:
        return not self.done and not self.buffer and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def send(self, data: bytes) -> None:
        if self.done or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        self.transport.write(data)
        if self._writable is not None and not self._writable.done():
            await self._writable
            if self.done:
                raise ConnectionResetError("the connection closed while the request was being sent")

    async def more(self) -> bool:
        """Waits until more bytes arrive or the connection ends; False if it had already ended."""
        if self.done:
            return False
        waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None
        return True

    def take(self, n: int) -> bytes:
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        if self._paused and len(self.buffer) < LOW_WATER and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def until(self, separator: bytes, limit: int) -> bytes:
        """The bytes up to and including ``separator``; ``_Cut`` if the connection ends first."""
        start = 0
        while True:
            i = self.buffer.find(separator, start)
            if i >= 0:
                return self.take(i + len(separator))
            if len(self.buffer) > limit:
                raise _TooLong
            start = max(0, len(self.buffer) - len(separator) + 1)
            if not await self.more():
                raise _Cut(len(self.buffer))

    async def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not await self.more():
                raise _Cut(len(self.buffer))
        return self.take(n)

    async def some(self, most: int) -> bytes:
        """Up to ``most`` bytes, as soon as there are any; ``b""`` once the connection has ended."""
        while not self.buffer:
            if not await self.more():
                return b""
        return self.take(most)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Cut(Exception):
    """The connection ended before what was being read was complete (``partial`` bytes of it had come)."""

    def __init__(self, partial: int) -> None:
        super().__init__(partial)
        self.partial = partial


class _TooLong(Exception):
    pass


class Response:
    """An answer whose head has been read; its body is read once, by ``read`` or ``lines``."""

    def __init__(
        self,
        client: Client,
        origin: _Origin,
        conn: _Connection,
        status: int,
        headers: dict[str, str],
        keep_alive: bool,
    ) -> None:
        self.status = status
        self.headers = headers
        self._client, self._origin = client, origin
        self._conn: _Connection | None = conn
        self._keep_alive = keep_alive
        self._done = False

    async def read(self) -> bytes:
        length = self.headers.get("content-length")
        if length is None or self._conn is None or "transfer-encoding" in self.headers:
            return b"".join([chunk async for chunk in self._chunks()])
        # The common answer, a body of known length: one read, without the generator of ``_chunks``.
        try:
            size = int(length)
        except ValueError:
            raise ProtocolError(f"malformed Content-Length: {length[:40]!r}") from None
        try:
            body = await self._conn.exactly(size)
        except _Cut as e:
            raise ProtocolError(f"the connection closed {size - e.partial} bytes before the end of the body") from None
        self._done = True
        return body

    async def lines(self) -> AsyncIterator[str]:
        """The body split on line ends (``\\n``, ``\\r\\n``), decoded as UTF-8."""
        pending = b""
        async for chunk in self._chunks():
            pending += chunk
            if b"\n" not in pending:
                continue
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.rstrip(b"\r").decode("utf-8", "replace")
        if pending:
            yield pending.rstrip(b"\r").decode("utf-8", "replace")

    async def close(self) -> None:
        """Give the connection back if the body was read to its end, else close it."""
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        if self._done and self._keep_alive:
            self._client._release(self._origin, conn)
        else:
            conn.close()

    async def _chunks(self) -> AsyncIterator[bytes]:
        if self._conn is None:
            raise ProtocolError("the response was closed before its body was read")
        conn = self._conn
        try:
            length = self.headers.get("content-length")
            if self.headers.get("transfer-encoding", "").lower().endswith("chunked"):
                while True:
                    size_line = await conn.until(b"\r\n", MAX_HEAD_BYTES)
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        while (await conn.until(b"\r\n", MAX_HEAD_BYTES)) != b"\r\n":
                            pass  # trailers
                        break
                    chunk = await conn.exactly(size + 2)
                    yield chunk[:-2]
            elif length is not None:
                left = int(length)
                while left > 0:
                    chunk = await conn.some(min(left, READ_SIZE))
                    if not chunk:
                        raise ProtocolError(f"the connection closed {left} bytes before the end of the body")
                    left -= len(chunk)
                    yield chunk
            else:
                self._keep_alive = False
                while chunk := await conn.some(READ_SIZE):
                    yield chunk
        except (_Cut, _TooLong) as e:
            raise ProtocolError(f"the body was cut short: {type(e).__name__}") from None
        except ValueError:
            raise ProtocolError("malformed chunked body") from None
        self._done = True


class Client:
    def __init__(self) -> None:
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Response:
        """POST ``body`` and read the answer's head (callers bound the time with ``outcrop.deadlines.within``)."""
        origin, target = _split(url)
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (
            f"POST {target} HTTP/1.1\r\nHost: {origin.authority}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
        ).encode("latin-1") + body
        conn, reused = await self._connection(origin)
        try:
            return await self._exchange(origin, conn, request)
        except _NothingReceived as e:
            conn.close()
            if not reused:
                raise ProtocolError(f"the server closed the connection without answering: {e}") from None
        except BaseException:
            conn.close()
            raise
        conn = await self._connect(origin)  # the server had closed the idle connection: once more
        try:
            return await self._exchange(origin, conn, request)
        except _NothingReceived as e:
            conn.close()
            raise ProtocolError(f"the server closed the connection without answering: {e}") from None
        except BaseException:
            conn.close()
            raise

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    async def _exchange(self, origin: _Origin, conn: _Connection, request: bytes) -> Response:
        try:
            await conn.send(request)
            head = await conn.until(b"\r\n\r\n", MAX_HEAD_BYTES)
        except _Cut as e:
            if not e.partial:
                raise _NothingReceived(type(conn.error).__name__ if conn.error else "EOF") from None
            raise ProtocolError("the connection closed in the middle of the answer's head") from None
        except _TooLong:
            raise ProtocolError("the answer's head is too large") from None
        except ConnectionError as e:
            raise _NothingReceived(type(e).__name__) from None
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        try:
            status = int(status_line[1])
        except (IndexError, ValueError):
            raise ProtocolError(f"not an HTTP status line: {lines[0][:100]!r}") from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        keep_alive = status_line[0] == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        return Response(self, origin, conn, status, headers, keep_alive)

    async def _connection(self, origin: _Origin) -> tuple[_Connection, bool]:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn, True
            conn.close()
        return await self._connect(origin), False

    async def _connect(self, origin: _Origin) -> _Connection:
        context = None
        if origin.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                lambda: _Connection(loop), origin.host, origin.port, ssl=context,
                server_hostname=origin.host if context else None,
            )
        except OSError as e:
            raise ConnectError(f"{type(e).__name__}: {e}") from None
        return conn

    def _release(self, origin: _Origin, conn: _Connection) -> None:
        if conn.usable():
            self._idle.setdefault(origin, []).append(conn)
        else:
            conn.close()


class _NothingReceived(Exception):
    """The connection failed before any byte of the answer (retried once if the connection was reused)."""
