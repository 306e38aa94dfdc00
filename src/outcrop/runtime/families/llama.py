"""Meta Llama: ``{"prompt", "max_gen_len", "temperature", "top_p"}`` → ``{"generation", …}``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from outcrop.providers.messages import (
    BlockDelta,
    ChatRequest,
    ChatResponse,
    MessageStart,
    MessageStop,
    Metadata,
    StreamEvent,
)
from outcrop.runtime.families.base import NUMBER, optional, require
from outcrop.runtime.families.prompt import prompt_request
from outcrop.runtime.families.schema import INTEGER, NUMERIC, STRING, BodySchema, params

SCHEMA = BodySchema(params(("prompt",), prompt=STRING, max_gen_len=INTEGER, temperature=NUMERIC, top_p=NUMERIC))

STOP = {"max_tokens": "length"}


class Llama:
    name = "llama"
    schema = SCHEMA

    def parse(self, body: Mapping[str, Any], model_id: str) -> ChatRequest:
        return prompt_request(
            require(body, "prompt", str),
            optional(body, "max_gen_len", int),
            optional(body, "temperature", NUMBER),
            optional(body, "top_p", NUMBER),
        )

    def render(self, response: ChatResponse, request: ChatRequest, model_id: str, request_id: str) -> dict[str, Any]:
        return {
            "generation": response.text(),
            "prompt_token_count": response.usage.input_tokens,
            "generation_token_count": response.usage.output_tokens,
            "stop_reason": STOP.get(response.stop_reason, "stop"),
        }

    async def stream(
        self, events: AsyncIterator[StreamEvent], request: ChatRequest, model_id: str, request_id: str
    ) -> AsyncIterator[dict[str, Any]]:
        input_tokens: int | None = None
        generated, stop = 0, None
        async for event in events:
            if isinstance(event, MessageStart):
                input_tokens = event.input_tokens
            elif isinstance(event, BlockDelta) and event.text is not None:
                generated += 1
                # Bedrock reports the prompt's size on the first chunk only.
                yield {"generation": event.text, "prompt_token_count": input_tokens if generated == 1 else None,
                       "generation_token_count": generated, "stop_reason": None}
            elif isinstance(event, MessageStop):
                stop = STOP.get(event.stop_reason, "stop")
            elif isinstance(event, Metadata):
                # The last chunk is the first when nothing was generated (max_gen_len 0): it reports the prompt.
                yield {"generation": "", "prompt_token_count": event.usage.input_tokens if generated == 0 else None,
                       "generation_token_count": event.usage.output_tokens, "stop_reason": stop}
