"""The floor: a gateway that does nothing, to show what any Python gateway pays on this machine.

A bare ASGI callable, started by ``run.py`` under uvicorn exactly as ``outcrop serve`` runs (same server,
same event loop, as many workers as its default), that reads each request's body, sends one fixed chat completion to the
backend with outcrop's own HTTP/1.1 client (``outcrop.providers.http11``, keep-alive) and answers with
the backend's bytes. No routing, no translation, no validation, no metering: the latency it adds over
the direct call is the cost of the extra hop itself (two more loopback exchanges, the HTTP server's
threads, the event loop), and outcrop's own cost is what it adds beyond this row.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from outcrop.providers.http11 import Client

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

URL = os.environ.get("BACKEND_URL", "http://127.0.0.1:9100") + "/v1/chat/completions"
BODY = b'{"model":"bench","messages":[{"role":"user","content":"Hello! Please give me a short answer."}],"max_tokens":64}'
HEADERS = {"content-type": "application/json"}
client = Client()


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    response = await client.post(URL, BODY, HEADERS)
    try:
        data = await response.read()
    finally:
        await response.close()
    await send({"type": "http.response.start", "status": response.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
