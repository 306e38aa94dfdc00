"""The model behind every gateway: an OpenAI-compatible chat-completions server that answers after 20 ms.

A bare ASGI callable (started by ``run.py`` under uvicorn, as ``outcrop serve`` runs) so that it costs
far less than any gateway in front of it. ``POST …/chat/completions`` sleeps ``SERVICE_MS`` and answers
one fixed completion with usage; with ``"stream": true`` it sends, after the same 20 ms, an SSE stream of
``CHUNKS`` content deltas, the finish chunk, a usage chunk and ``[DONE]``, each flushed at once. The
request body is read but parsed only as far as finding ``"stream":true`` (every client here writes JSON
without spaces there, or with one: both are accepted). Anything else is a 404.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

SERVICE_MS = 20
WORDS = ("Sure", "-", "here", "is", "a", "short", "answer", "from", "the", "benchmark", "backend", ".")
CHUNKS = len(WORDS)
USAGE = b'{"prompt_tokens":12,"completion_tokens":12,"total_tokens":24}'
COMPLETION = (
    b'{"id":"chatcmpl-bench","object":"chat.completion","created":1764201600,"model":"bench",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"' + " ".join(WORDS).encode()
    + b'"},"finish_reason":"stop"}],"usage":' + USAGE + b"}"
)
JSON_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(COMPLETION)).encode())]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
NOT_FOUND = b'{"error":{"message":"not found","type":"invalid_request_error"}}'


def _chunk(delta: bytes, finish: bytes = b"null") -> bytes:
    return (
        b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1764201600,"model":"bench",'
        b'"choices":[{"index":0,"delta":' + delta + b',"finish_reason":' + finish + b"}]}\n\n"
    )


FIRST = _chunk(b'{"role":"assistant","content":"' + WORDS[0].encode() + b'"}')
REST = b"".join(_chunk(b'{"content":" ' + w.encode() + b'"}') for w in WORDS[1:])
END = (
    _chunk(b"{}", b'"stop"')
    + b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1764201600,"model":"bench",'
    b'"choices":[],"usage":' + USAGE + b"}\n\ndata: [DONE]\n\n"
)


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    if scope["method"] != "POST" or not scope["path"].endswith("/chat/completions"):
        await send({"type": "http.response.start", "status": 404 if scope["method"] == "POST" else 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": NOT_FOUND})
        return
    await asyncio.sleep(SERVICE_MS / 1000)
    if b'"stream":true' in body or b'"stream": true' in body:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await send({"type": "http.response.body", "body": FIRST, "more_body": True})
        await send({"type": "http.response.body", "body": REST, "more_body": True})
        await send({"type": "http.response.body", "body": END, "more_body": False})
        return
    await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": COMPLETION})
