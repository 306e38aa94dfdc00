"""Amazon Nova: the ``messages-v1`` body, Converse-shaped with ``inferenceConfig.max_new_tokens``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from outcrop.providers.messages import (
    Block,
    BlockDelta,
    BlockStart,
    BlockStop,
    CachePoint,
    ChatRequest,
    ChatResponse,
    Image,
    Message,
    MessageStart,
    MessageStop,
    Metadata,
    Reasoning,
    ReasoningDelta,
    StreamEvent,
    Text,
    Tool,
    ToolChoice,
    ToolResult,
    ToolUse,
)
from outcrop.runtime.converse import cache_ttl, reasoning_effort, reasons_by_effort, tool_result_items
from outcrop.runtime.families.base import decode_base64, malformed, optional, require
from outcrop.runtime.families.schema import (
    INTEGER,
    NUMERIC,
    OBJECT,
    STRING,
    STRINGS,
    BodySchema,
    array,
    obj,
    params,
)

# The messages-v1 body, Converse-shaped: every member outcrop reads, typed at every depth.
_CACHE_POINT = obj(type=STRING)
_SOURCE = obj(bytes=STRING)
_BLOCK = obj(
    text=STRING,
    image=obj(format=STRING, source=_SOURCE),
    video=obj(format=STRING, source=OBJECT),
    document=obj(format=STRING, name=STRING, source=OBJECT),
    toolUse=obj(toolUseId=STRING, name=STRING, input=OBJECT),
    toolResult=obj(toolUseId=STRING, status=STRING, content=array(obj(text=STRING))),
    reasoningContent=obj(reasoningText=obj(text=STRING, signature=STRING)),
    cachePoint=_CACHE_POINT,
)
SCHEMA = BodySchema(params(
    ("messages",),
    schemaVersion=STRING,
    messages=array(obj(("role", "content"), role={"enum": ["user", "assistant"]}, content=array(_BLOCK))),
    system=array(obj(text=STRING, cachePoint=_CACHE_POINT)),
    inferenceConfig=params(max_new_tokens=INTEGER, maxTokens=INTEGER, temperature=NUMERIC, topP=NUMERIC, top_p=NUMERIC,
                        topK=INTEGER, top_k=INTEGER, stopSequences=STRINGS,
                        reasoningConfig=obj(type=STRING, maxReasoningEffort=STRING)),
    toolConfig=obj(
        tools=array(obj(toolSpec=obj(("name",), name=STRING, description=STRING, inputSchema=obj(json=OBJECT)),
                        cachePoint=_CACHE_POINT)),
        toolChoice=obj(auto=OBJECT, any=OBJECT, tool=obj(("name",), name=STRING)),
    ),
))


# Content blocks of messages-v1 that outcrop's models do not read (as Converse leaves them out): accepted, left out.
UNREAD_BLOCKS = ("video", "document", "audio")


def _block(raw: Any, where: str) -> Block | None:
    if not isinstance(raw, dict):
        raise malformed(f"{where}: expected type: JSONObject")
    if "text" in raw:
        return Text(str(raw["text"]))
    if "image" in raw:
        image = raw["image"]
        data = decode_base64(image.get("source", {}).get("bytes", ""), f"{where}/image/source/bytes")
        return Image(image.get("format", "png"), data)
    if "toolUse" in raw:
        t = raw["toolUse"]
        return ToolUse(t.get("toolUseId", ""), t.get("name", ""), t.get("input") or {})
    if "toolResult" in raw:
        t = raw["toolResult"]
        items = tool_result_items(t.get("content", ()), lambda c, k: _block(c, f"{where}/toolResult/content/{k}"))
        return ToolResult(t.get("toolUseId", ""), items, t.get("status"))
    if "reasoningContent" in raw:  # Nova 2's earlier reasoning, sent back with the conversation
        text = (raw["reasoningContent"] or {}).get("reasoningText") or {}
        return Reasoning(str(text.get("text", "")))
    if any(kind in raw for kind in UNREAD_BLOCKS):
        return None
    raise malformed(f"{where}: extraneous key [{next(iter(raw), '')}] is not permitted")


def _given(config: Mapping[str, Any], *names: str) -> Any:
    """The first of ``names`` given (not absent, not null) in ``config``: Nova takes both spellings."""
    return next((config[n] for n in names if config.get(n) is not None), None)


class Nova:
    name = "nova"
    schema = SCHEMA

    def parse(self, body: Mapping[str, Any], model_id: str) -> ChatRequest:
        raw_messages = require(body, "messages", list)
        messages = []
        points: list[CachePoint] = []  # Nova's prompt caching: cachePoint blocks, as in Converse
        for i, m in enumerate(raw_messages):
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
                raise malformed(f"#/messages/{i}/role: must be user or assistant")
            content = m.get("content")
            if not isinstance(content, list):
                raise malformed(f"#/messages/{i}/content: expected type: JSONArray")
            blocks: list[Block] = []
            for j, c in enumerate(content):
                if isinstance(c, dict) and isinstance(c.get("cachePoint"), dict):
                    points.append(CachePoint("messages", i, len(blocks), cache_ttl(c["cachePoint"])))
                elif (block := _block(c, f"#/messages/{i}/content/{j}")) is not None:
                    blocks.append(block)
            messages.append(Message(m["role"], tuple(blocks)))
        system: list[str] = []
        for entry in optional(body, "system", list) or ():
            if isinstance(entry, dict) and isinstance(entry.get("cachePoint"), dict):
                points.append(CachePoint("system", len(system), 0, cache_ttl(entry["cachePoint"])))
            elif isinstance(entry, dict):
                system.append(str(entry.get("text", "")))
        config = optional(body, "inferenceConfig", dict) or {}
        tool_config = optional(body, "toolConfig", dict) or {}
        tools: list[Tool] = []
        for t in tool_config.get("tools", ()):
            if isinstance(t.get("cachePoint"), dict):
                points.append(CachePoint("tools", len(tools), 0, cache_ttl(t["cachePoint"])))
            spec = t.get("toolSpec")
            if spec is not None:
                schema = (spec.get("inputSchema") or {}).get("json") or {"type": "object"}
                tools.append(Tool(spec["name"], spec.get("description", ""), schema))
        raw_choice = tool_config.get("toolChoice")
        choice = None
        if isinstance(raw_choice, dict) and raw_choice:
            mode = next(iter(raw_choice))
            choice = ToolChoice(mode if mode in ("auto", "any", "tool") else "auto", (raw_choice.get("tool") or {}).get("name"))
        return ChatRequest(
            messages=tuple(messages),
            system=tuple(system),
            max_tokens=_given(config, "max_new_tokens", "maxTokens"),
            temperature=config.get("temperature"),
            top_p=_given(config, "top_p", "topP"),
            top_k=_given(config, "top_k", "topK"),
            stop_sequences=tuple(config.get("stopSequences") or ()),
            tools=tuple(tools),
            tool_choice=choice,
            reasoning_effort=reasoning_effort(config.get("reasoningConfig"), "#/inferenceConfig/reasoningConfig",
                                              lambda detail: malformed(detail.rstrip(".")))
            if reasons_by_effort(model_id) else None,
            cache_points=tuple(points),
        )

    def render(self, response: ChatResponse, request: ChatRequest, model_id: str, request_id: str) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        for b in response.content:
            if isinstance(b, Text):
                content.append({"text": b.text})
            elif isinstance(b, ToolUse):
                content.append({"toolUse": {"toolUseId": b.id, "name": b.name, "input": b.input}})
            elif isinstance(b, Reasoning):  # Nova 2's reasoning, as its Converse shape has it
                content.append({"reasoningContent": {"reasoningText": {"text": b.text}}})
        u = response.usage
        return {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": response.stop_reason,
            "usage": {
                "inputTokens": u.input_tokens, "outputTokens": u.output_tokens, "totalTokens": u.total_tokens,
                "cacheReadInputTokenCount": u.cache_read_tokens, "cacheWriteInputTokenCount": u.cache_write_tokens,
            },
        }

    async def stream(
        self, events: AsyncIterator[StreamEvent], request: ChatRequest, model_id: str, request_id: str
    ) -> AsyncIterator[dict[str, Any]]:
        async for event in events:
            if isinstance(event, MessageStart):
                yield {"messageStart": {"role": event.role}}
            elif isinstance(event, BlockStart) and event.tool_use is not None:
                start = {"toolUse": {"toolUseId": event.tool_use.id, "name": event.tool_use.name}}
                yield {"contentBlockStart": {"start": start, "contentBlockIndex": event.index}}
            elif isinstance(event, BlockDelta):
                delta = {"text": event.text} if event.text is not None else {"toolUse": {"input": event.tool_input or ""}}
                yield {"contentBlockDelta": {"delta": delta, "contentBlockIndex": event.index}}
            elif isinstance(event, ReasoningDelta) and event.text is not None:
                delta = {"reasoningContent": {"text": event.text}}
                yield {"contentBlockDelta": {"delta": delta, "contentBlockIndex": event.index}}
            elif isinstance(event, BlockStop):
                yield {"contentBlockStop": {"contentBlockIndex": event.index}}
            elif isinstance(event, MessageStop):
                yield {"messageStop": {"stopReason": event.stop_reason}}
            elif isinstance(event, Metadata):
                u = event.usage
                yield {
                    "metadata": {
                        "usage": {"inputTokens": u.input_tokens, "outputTokens": u.output_tokens},
                        "metrics": {},
                        "trace": {},
                    }
                }
