"""The Converse API ↔ the neutral message form (Converse is the neutral form's own vocabulary).

Accepts what real clients send: empty ``system: []`` and ``inferenceConfig: {}`` (langchain),
``cachePoint`` and ``guardContent`` blocks (ignored), ``toolChoice`` as ``auto``/``any``/``tool``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from itertools import pairwise
from typing import Any

from outcrop.errors import ValidationError
from outcrop.providers.messages import (
    Block,
    BlockDelta,
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Image,
    Message,
    MessageStart,
    MessageStop,
    Metadata,
    StreamEvent,
    Text,
    Tool,
    ToolChoice,
    ToolResult,
    ToolUse,
    Usage,
)

CONVERSATION_START = "A conversation must start with a user message. Try again with a conversation that starts with a user message."
ALTERNATE = (
    "A conversation must alternate between user and assistant roles. Make sure the conversation "
    "alternates between user and assistant roles and try again."
)
TOOL_CONFIG_NEEDED = "The toolConfig field must be defined when using toolUse and toolResult content blocks."
EXTRA_FIELDS_NOT_OBJECT = (
    "The format of the value at additionalModelRequestFields is invalid. Provide a json object for the field and try again."
)
# outcrop serves every invocation one way: at standard latency, in the default service tier. A request for
# latency-optimized inference or another tier is served so, and its answer says so, as Bedrock's does when it
# serves a request other than as asked (an optimized request past its quota, a reserved one past its
# reservation). The answer states them only when the request asked.
SERVED_LATENCY = "standard"
SERVED_TIER = "default"


def served_as(params: Mapping[str, Any]) -> dict[str, Any]:
    """Converse's ``performanceConfig`` and ``serviceTier`` as served, for a request that set them."""
    out: dict[str, Any] = {}
    if params.get("performanceConfig") is not None:
        out["performanceConfig"] = {"latency": SERVED_LATENCY}
    if params.get("serviceTier") is not None:
        out["serviceTier"] = {"type": SERVED_TIER}
    return out


def served_headers(params: Mapping[str, Any]) -> dict[str, Any]:
    """InvokeModel's ``performanceConfigLatency`` and ``serviceTier`` (response headers) as served."""
    out: dict[str, Any] = {}
    if params.get("performanceConfigLatency") is not None:
        out["performanceConfigLatency"] = SERVED_LATENCY
    if params.get("serviceTier") is not None:
        out["serviceTier"] = SERVED_TIER
    return out


def _block(raw: Mapping[str, Any]) -> Block | None:
    if "text" in raw:
        return Text(raw["text"])
    if "image" in raw:
        return Image(raw["image"].get("format", "png"), raw["image"].get("source", {}).get("bytes", b""))
    if "toolUse" in raw:
        t = raw["toolUse"]
        return ToolUse(t["toolUseId"], t["name"], t.get("input") if t.get("input") is not None else {})
    if "toolResult" in raw:
        t = raw["toolResult"]
        items = tuple(c["text"] if "text" in c else c.get("json") for c in t.get("content", ()))
        return ToolResult(t["toolUseId"], items, t.get("status"))
    return None  # cachePoint, guardContent, …: nothing for a model to read


def chat_request(params: Mapping[str, Any]) -> ChatRequest:
    messages: list[Message] = []
    uses_tools = False
    for raw in params.get("messages") or ():
        blocks = tuple(b for b in (_block(c) for c in raw.get("content", ())) if b is not None)
        uses_tools = uses_tools or any(isinstance(b, ToolUse | ToolResult) for b in blocks)
        messages.append(Message(raw["role"], blocks))
    if not messages or messages[0].role != "user":
        raise ValidationError(CONVERSATION_START)
    if any(a.role == b.role for a, b in pairwise(messages)):
        raise ValidationError(ALTERNATE)
    config = params.get("inferenceConfig") or {}
    tool_config = params.get("toolConfig")
    if uses_tools and not tool_config:
        raise ValidationError(TOOL_CONFIG_NEEDED)
    tools: list[Tool] = []
    choice = None
    if tool_config:
        for t in tool_config.get("tools", ()):
            spec = t.get("toolSpec")
            if spec is not None:
                schema = (spec.get("inputSchema") or {}).get("json") or {"type": "object"}
                if not isinstance(schema, dict):
                    raise ValidationError(f"The inputSchema of tool {spec['name']} must be a JSON object.")
                tools.append(Tool(spec["name"], spec.get("description", ""), schema))
        raw_choice = tool_config.get("toolChoice") or {}
        if "tool" in raw_choice:
            choice = ToolChoice("tool", raw_choice["tool"]["name"])
        elif "any" in raw_choice:
            choice = ToolChoice("any")
        elif "auto" in raw_choice:
            choice = ToolChoice("auto")
    extra = params.get("additionalModelRequestFields") or {}
    if not isinstance(extra, dict):  # a document member: any JSON value passes the shape
        raise ValidationError(EXTRA_FIELDS_NOT_OBJECT)
    extra = dict(extra)
    top_k = extra.get("top_k", extra.get("topK"))
    return ChatRequest(
        messages=tuple(messages),
        system=tuple(s["text"] for s in params.get("system") or () if "text" in s),
        max_tokens=config.get("maxTokens"),
        temperature=config.get("temperature"),
        top_p=config.get("topP"),
        top_k=top_k if isinstance(top_k, int) else None,
        stop_sequences=tuple(config.get("stopSequences") or ()),
        tools=tuple(tools),
        tool_choice=choice,
        extra=extra,
    )


def content_blocks(blocks: tuple[Block, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for b in blocks:
        if isinstance(b, Text):
            out.append({"text": b.text})
        elif isinstance(b, ToolUse):
            out.append({"toolUse": {"toolUseId": b.id, "name": b.name, "input": b.input}})
    return out


def usage_shape(u: Usage) -> dict[str, int]:
    out = {"inputTokens": u.input_tokens, "outputTokens": u.output_tokens, "totalTokens": u.total_tokens}
    if u.cache_read_tokens:
        out["cacheReadInputTokens"] = u.cache_read_tokens
    if u.cache_write_tokens:
        out["cacheWriteInputTokens"] = u.cache_write_tokens
    return out


def converse_output(response: ChatResponse, latency_ms: int) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": content_blocks(response.content)}},
        "stopReason": response.stop_reason,
        "usage": usage_shape(response.usage),
        "metrics": {"latencyMs": latency_ms},
    }


async def converse_events(
    events: AsyncIterator[StreamEvent], started: float, served: Mapping[str, Any] | None = None
) -> AsyncIterator[dict[str, Any]]:
    """ConverseStream's events; text blocks have no contentBlockStart, as at Bedrock. ``served`` (see
    ``served_as``) goes into the metadata event."""

    async for event in events:
        if isinstance(event, MessageStart):
            yield {"messageStart": {"role": event.role}}
        elif isinstance(event, BlockStart):
            if event.tool_use is not None:
                start = {"toolUse": {"toolUseId": event.tool_use.id, "name": event.tool_use.name}}
                yield {"contentBlockStart": {"start": start, "contentBlockIndex": event.index}}
        elif isinstance(event, BlockDelta):
            delta = {"text": event.text} if event.text is not None else {"toolUse": {"input": event.tool_input or ""}}
            yield {"contentBlockDelta": {"delta": delta, "contentBlockIndex": event.index}}
        elif isinstance(event, BlockStop):
            yield {"contentBlockStop": {"contentBlockIndex": event.index}}
        elif isinstance(event, MessageStop):
            yield {"messageStop": {"stopReason": event.stop_reason}}
        elif isinstance(event, Metadata):
            latency = int((time.monotonic() - started) * 1000)
            yield {"metadata": {"usage": usage_shape(event.usage), "metrics": {"latencyMs": latency}, **(served or {})}}
