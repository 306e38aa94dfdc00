"""The ceiling: a bare ASGI callable answering one fixed JSON body, served by uvicorn like outcrop.

It drains the request body (so POSTs cost what they cost on the wire) and answers every path the same.
Started by ``run.py`` under uvicorn with the flags of ``benchlib.asgi_command``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

BODY = (
    b'{"inferenceProfileArn":"arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/'
    b'abcdefghijkl","status":"ACTIVE"}'
)
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


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
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
