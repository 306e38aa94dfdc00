"""Amazon Titan Text: ``{"inputText", "textGenerationConfig"}`` → ``{"inputTextTokenCount", "results"}``."""

from __future__ import annotations

import re
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
from outcrop.runtime.families.base import malformed, optional, require
from outcrop.runtime.families.prompt import prompt_request
from outcrop.runtime.families.schema import INTEGER, NUMERIC, STRING, STRINGS, BodySchema, params

SCHEMA = BodySchema(params(
    ("inputText",),
    inputText=STRING,
    textGenerationConfig=params(maxTokenCount=INTEGER, temperature=NUMERIC, topP=NUMERIC, stopSequences=STRINGS),
))

STOP_SEQUENCE = re.compile(r"^(\|+|User:)$")
COMPLETION = {"end_turn": "FINISH", "max_tokens": "LENGTH", "stop_sequence": "STOP_CRITERIA_MET",
              "content_filtered": "CONTENT_FILTERED"}


class TitanText:
    name = "titan-text"
    schema = SCHEMA

    def parse(self, body: Mapping[str, Any], model_id: str) -> ChatRequest:
        text = require(body, "inputText", str)
        config = optional(body, "textGenerationConfig", dict) or {}
        stop = tuple(config.get("stopSequences") or ())
        # Titan stops at one sequence, of pipes or "User:", and Bedrock's schema says so without a pointer
        # (boto/boto3#3993, langchain-ai/langchain#18565; the user guide lists the two).
        if len(stop) > 1:
            raise malformed(f"expected maximum item count: 1, found: {len(stop)}")
        for seq in stop:
            if not STOP_SEQUENCE.fullmatch(seq):
                raise malformed(f"string [{seq}] does not match pattern {STOP_SEQUENCE.pattern}")
        return prompt_request(text, config.get("maxTokenCount"), config.get("temperature"), config.get("topP"),
                              stop=stop)

    def render(self, response: ChatResponse, request: ChatRequest, model_id: str, request_id: str) -> dict[str, Any]:
        return {
            "inputTextTokenCount": response.usage.input_tokens,
            "results": [{
                "tokenCount": response.usage.output_tokens,
                "outputText": response.text(),
                "completionReason": COMPLETION.get(response.stop_reason, "FINISH"),
            }],
        }

    async def stream(
        self, events: AsyncIterator[StreamEvent], request: ChatRequest, model_id: str, request_id: str
    ) -> AsyncIterator[dict[str, Any]]:
        input_tokens, generated, pending = 0, 0, None
        async for event in events:
            if isinstance(event, MessageStart):
                input_tokens = event.input_tokens or 0
            elif isinstance(event, BlockDelta) and event.text is not None:
                if pending is not None:
                    yield pending
                generated += 1
                pending = {"outputText": event.text, "index": 0, "totalOutputTextTokenCount": generated,
                           "completionReason": None, "inputTextTokenCount": input_tokens}
            elif isinstance(event, MessageStop):
                # The last chunk carries the completion reason.
                pending = (pending or {"outputText": "", "index": 0, "totalOutputTextTokenCount": generated,
                                       "inputTextTokenCount": input_tokens})
                pending["completionReason"] = COMPLETION.get(event.stop_reason, "FINISH")
            elif isinstance(event, Metadata) and pending is not None:
                pending["totalOutputTextTokenCount"] = event.usage.output_tokens
                pending["inputTextTokenCount"] = event.usage.input_tokens
                yield pending
                pending = None
