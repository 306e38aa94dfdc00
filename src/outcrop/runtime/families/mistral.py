"""Mistral: ``{"prompt", "max_tokens", "stop", …}`` → ``{"outputs": [{"text", "stop_reason"}]}``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from outcrop.providers.messages import BlockDelta, ChatRequest, ChatResponse, MessageStop, StreamEvent
from outcrop.runtime.families.base import NUMBER, optional, require
from outcrop.runtime.families.prompt import prompt_request

STOP = {"max_tokens": "length"}


class Mistral:
    name = "mistral"

    def parse(self, body: Mapping[str, Any], model_id: str) -> ChatRequest:
        return prompt_request(
            require(body, "prompt", str),
            optional(body, "max_tokens", int),
            optional(body, "temperature", NUMBER),
            optional(body, "top_p", NUMBER),
            optional(body, "top_k", int),
            tuple(optional(body, "stop", list) or ()),
        )

    def render(self, response: ChatResponse, request: ChatRequest, model_id: str, request_id: str) -> dict[str, Any]:
        return {"outputs": [{"text": response.text(), "stop_reason": STOP.get(response.stop_reason, "stop")}]}

    async def stream(
        self, events: AsyncIterator[StreamEvent], request: ChatRequest, model_id: str, request_id: str
    ) -> AsyncIterator[dict[str, Any]]:
        async for event in events:
            if isinstance(event, BlockDelta) and event.text is not None:
                yield {"outputs": [{"text": event.text, "stop_reason": None}]}
            elif isinstance(event, MessageStop):
                yield {"outputs": [{"text": "", "stop_reason": STOP.get(event.stop_reason, "stop")}]}
