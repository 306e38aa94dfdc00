"""The provider interface: the one seam between the invocation pipeline and a backend.

A ``Target`` is one (Region, model) deployment the router chose; a provider runs a neutral request
there. A router (failover, capacity) wraps these calls without knowing which backend is behind them.
Backend failures are raised as the AWS errors the caller must see (``outcrop.errors``), never hidden.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from outcrop.config import Deployment
from outcrop.providers.messages import ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, StreamEvent

# What reading a backend's answer of the wrong shape raises (orjson's JSONDecodeError is a ValueError): each
# provider turns it into ModelErrorException (mid-stream, modelStreamErrorException), never a 500.
MALFORMED = (ValueError, TypeError, KeyError, IndexError, AttributeError)


@dataclass(frozen=True)
class Target:
    region: str
    model_id: str
    deployment: Deployment


class Provider(Protocol):
    async def chat(self, target: Target, request: ChatRequest) -> ChatResponse: ...

    def chat_stream(self, target: Target, request: ChatRequest) -> AsyncIterator[StreamEvent]: ...

    async def embed(self, target: Target, request: EmbedRequest) -> EmbedResponse: ...

    async def close(self) -> None: ...
