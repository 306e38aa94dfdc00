"""Cohere Command R / R+: ``{"message", "chat_history", "preamble", …}`` → ``{"text", "finish_reason", …}``."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from outcrop.providers.messages import (
    BlockDelta,
    ChatRequest,
    ChatResponse,
    Message,
    MessageStop,
    Metadata,
    StreamEvent,
    Text,
)
from outcrop.runtime.families.base import NUMBER, malformed, optional, require

FINISH = {"max_tokens": "MAX_TOKENS", "stop_sequence": "COMPLETE", "end_turn": "COMPLETE", "tool_use": "COMPLETE"}
ROLES = {"USER": "user", "CHATBOT": "assistant"}


class CohereCommand:
    name = "cohere-command"

    def parse(self, body: Mapping[str, Any], model_id: str) -> ChatRequest:
        message = require(body, "message", str)
        history = []
        for i, turn in enumerate(optional(body, "chat_history", list) or ()):
            role = ROLES.get(str(turn.get("role", "")).upper())
            if role is None:
                raise malformed(f"#/chat_history/{i}/role: USER or CHATBOT expected")
            history.append(Message(role, (Text(str(turn.get("message", ""))),)))  # type: ignore[arg-type]
        preamble = optional(body, "preamble", str)
        return ChatRequest(
            messages=(*history, Message("user", (Text(message),))),
            system=(preamble,) if preamble else (),
            max_tokens=optional(body, "max_tokens", int),
            temperature=optional(body, "temperature", NUMBER),
            top_p=optional(body, "p", NUMBER),
            top_k=optional(body, "k", int),
            stop_sequences=tuple(optional(body, "stop_sequences", list) or ()),
        )

    def render(self, response: ChatResponse, request: ChatRequest, model_id: str, request_id: str) -> dict[str, Any]:
        ids = _ids(request_id)
        return {
            "response_id": ids[0],
            "text": response.text(),
            "generation_id": ids[1],
            "chat_history": [],
            "finish_reason": FINISH.get(response.stop_reason, "COMPLETE"),
        }

    async def stream(
        self, events: AsyncIterator[StreamEvent], request: ChatRequest, model_id: str, request_id: str
    ) -> AsyncIterator[dict[str, Any]]:
        ids, text, finish = _ids(request_id), [], "COMPLETE"
        yield {"is_finished": False, "event_type": "stream-start", "generation_id": ids[1]}
        async for event in events:
            if isinstance(event, BlockDelta) and event.text is not None:
                text.append(event.text)
                yield {"is_finished": False, "event_type": "text-generation", "text": event.text}
            elif isinstance(event, MessageStop):
                finish = FINISH.get(event.stop_reason, "COMPLETE")
            elif isinstance(event, Metadata):
                yield {
                    "is_finished": True, "event_type": "stream-end", "finish_reason": finish,
                    "response": {"response_id": ids[0], "text": "".join(text), "generation_id": ids[1],
                                 "chat_history": [], "finish_reason": finish},
                }


def _ids(request_id: str) -> tuple[str, str]:
    h = hashlib.sha256(request_id.encode()).hexdigest()
    return (f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}", f"{h[32:40]}-{h[40:44]}-{h[44:48]}-{h[48:52]}-{h[52:64]}")
