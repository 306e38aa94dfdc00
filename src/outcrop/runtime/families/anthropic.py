"""Anthropic Claude on Bedrock: the Messages API body (``anthropic_version: bedrock-2023-05-31``)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

from outcrop.errors import ValidationError
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
    OutputSchema,
    Reasoning,
    ReasoningDelta,
    StreamEvent,
    Text,
    Tool,
    ToolChoice,
    ToolResult,
    ToolUse,
    Usage,
)
from outcrop.runtime.converse import (
    MAX_CACHE_POINTS_CLAUDE,
    TRAILING_WHITESPACE_CLAUDE,
    cache_ttl,
    claude_sampler_error,
    claude_thinking_error,
    reasoning_budget,
    too_many_cache_points,
)
from outcrop.runtime.families.base import NUMBER, decode_base64, malformed, optional, require
from outcrop.runtime.families.schema import (
    BOOLEAN,
    INTEGER,
    NUMERIC,
    OBJECT,
    STRING,
    STRINGS,
    BodySchema,
    array,
    obj,
    one_of_types,
)

# The Messages API body: every member outcrop reads, typed at every depth. One block schema serves every
# block type, since a member's name has one type whichever block carries it.
_CACHE_CONTROL = obj(type=STRING, ttl=STRING)
_BLOCK = one_of_types("string", "object", required=["type"], properties={
    "type": STRING, "text": STRING, "id": STRING, "name": STRING, "input": OBJECT, "tool_use_id": STRING,
    "content": one_of_types("string", "array", items=one_of_types("string", "object", properties={
        "type": STRING, "text": STRING})),
    "is_error": BOOLEAN, "thinking": STRING, "signature": STRING, "data": STRING,
    "source": obj(type=STRING, media_type=STRING, data=STRING), "cache_control": _CACHE_CONTROL,
})
# Claude's schema takes no ``null`` for a parameter (``#/temperature: expected type: Number, found: Null``,
# x3n0cr4735/celi#91), unlike the families whose SDKs send an unset parameter as null.
SCHEMA = BodySchema(obj(
    ("anthropic_version", "max_tokens", "messages"),
    anthropic_version=STRING,
    max_tokens=INTEGER,
    messages=array(obj(("role",), role={"enum": ["user", "assistant"]},
                       content=one_of_types("string", "array", items=_BLOCK))),
    system=one_of_types("string", "array", items=obj(type=STRING, text=STRING, cache_control=_CACHE_CONTROL)),
    temperature=NUMERIC, top_p=NUMERIC, top_k=INTEGER, stop_sequences=STRINGS,
    tools=array(obj(("name",), name=STRING, description=STRING, input_schema=OBJECT, cache_control=_CACHE_CONTROL)),
    tool_choice=obj(type=STRING, name=STRING),
    thinking=obj(type=STRING, budget_tokens=INTEGER),
    output_config=OBJECT,
    anthropic_beta=STRINGS,
))


ANTHROPIC_VERSION = "bedrock-2023-05-31"  # the one version Bedrock's Claude takes


def _model_name(model_id: str) -> str:
    """``anthropic.claude-3-haiku-20240307-v1:0`` → ``claude-3-haiku-20240307``, as the body's ``model``."""
    name = model_id.split(".", 1)[-1]
    return name.rsplit("-v", 1)[0] if "-v" in name else name


# Content blocks of the Messages API that outcrop's models do not read: a conversation replayed from Claude
# carries them, and they are accepted and left out. (Thinking blocks, which Claude needs back with tool
# results, are kept as reasoning.)
UNREAD_BLOCKS = frozenset({"redacted_thinking", "document", "search_result"})


def _block(raw: Any, where: str) -> Block | None:
    if isinstance(raw, str):
        return Text(raw)
    if not isinstance(raw, dict) or "type" not in raw:
        raise malformed(f"{where}: expected a content block with a type")
    kind = raw["type"]
    if kind == "text":
        return Text(str(raw.get("text", "")))
    if kind == "image":
        source = raw.get("source") or {}
        data = decode_base64(source.get("data", ""), f"{where}/source/data")
        return Image(str(source.get("media_type", "image/png")).split("/")[-1], data)
    if kind == "tool_use":
        return ToolUse(str(raw.get("id", "")), str(raw.get("name", "")), raw.get("input") or {})
    if kind == "tool_result":
        content = raw.get("content", "")
        items: tuple[Any, ...]
        if isinstance(content, str):
            items = (content,)
        else:
            items = tuple(c if isinstance(c, str) else c.get("text", "") if c.get("type") == "text"
                          else _block(c, f"{where}/content/{k}") if c.get("type") == "image" else c
                          for k, c in enumerate(content))
        return ToolResult(str(raw.get("tool_use_id", "")), items, "error" if raw.get("is_error") else None)
    if kind == "thinking":
        return Reasoning(str(raw.get("thinking", "")), raw.get("signature"))
    if kind in UNREAD_BLOCKS:
        return None
    raise malformed(f"{where}.type: {kind} is not a valid enum value")


def _usage(u: Usage) -> dict[str, int]:
    out = {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens}
    if u.cache_read_tokens or u.cache_write_tokens:  # Claude's names for the prompt cache's part
        out["cache_creation_input_tokens"] = u.cache_write_tokens
        out["cache_read_input_tokens"] = u.cache_read_tokens
    return out


def _cache_ttl(raw: Any) -> Literal["5m", "1h"] | None:
    """The TTL of a block's ``cache_control`` (``{"type": "ephemeral", "ttl": "1h"}``), or None without one."""
    control = raw.get("cache_control") if isinstance(raw, dict) else None
    return cache_ttl(control) if isinstance(control, dict) else None


def _output_format(body: Mapping[str, Any]) -> OutputSchema | None:
    """Claude's structured output: ``output_config.format`` = ``{"type": "json_schema", "schema": {…}}``."""
    config = optional(body, "output_config", dict)
    fmt = (config or {}).get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise malformed("#/output_config/format/type: json_schema is the only valid value")
    if not isinstance(fmt.get("schema"), dict):
        raise malformed("#/output_config/format/schema: expected type: JSONObject")
    return OutputSchema(fmt["schema"])


def _check_turns(raw_messages: list[Any]) -> None:
    """What Claude refuses in a conversation, in its words (which Bedrock passes on): empty content or text,
    and tool calls a next turn does not answer first, or answers it never made."""
    previous_uses: list[str] = []
    for i, m in enumerate(raw_messages):
        content = m.get("content", "")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        final_assistant = i == len(raw_messages) - 1 and m.get("role") == "assistant"
        if not content and not final_assistant:
            raise ValidationError(f"messages.{i}: all messages must have non-empty content except for the optional "
                                  "final assistant message")
        texts = [b["text"] for b in blocks if isinstance(b, dict) and b.get("type") == "text" and "text" in b]
        if content and any(not t for t in texts) and not final_assistant:
            raise ValidationError("messages: text content blocks must be non-empty")
        if any(t and not t.strip() for t in texts):
            raise ValidationError("messages: text content blocks must contain non-whitespace text")
        if final_assistant and blocks and isinstance(last := blocks[-1], dict) and last.get("type") == "text" \
                and isinstance(last.get("text"), str) and last["text"] != last["text"].rstrip():
            raise ValidationError(TRAILING_WHITESPACE_CLAUDE)
        if m.get("role") == "user":
            leading = 0
            for j, b in enumerate(blocks):
                if not (isinstance(b, dict) and b.get("type") == "tool_result"):
                    continue
                if b.get("tool_use_id") not in previous_uses:
                    raise ValidationError(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{b.get('tool_use_id')}. Each `tool_result` block must have a corresponding `tool_use` block "
                        "in the previous message.")
                leading += leading == j
            if leading < len(previous_uses):
                raise ValidationError(
                    f"messages.{i}: Did not find {len(previous_uses)} `tool_result` block(s) at the beginning of this "
                    "message. Messages following `tool_use` blocks must begin with a matching number of `tool_result` "
                    "blocks.")
        previous_uses = [b.get("id") for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"] \
            if m.get("role") == "assistant" else []


class Anthropic:
    name = "anthropic"
    schema = SCHEMA

    def parse(self, body: Mapping[str, Any], model_id: str) -> ChatRequest:
        version = require(body, "anthropic_version", str)
        if version != ANTHROPIC_VERSION:
            raise ValidationError(f"Invalid API version: {version}")  # boto/boto3#4218
        max_tokens = require(body, "max_tokens", int)
        raw_messages = require(body, "messages", list)
        if not raw_messages:  # Bedrock's schema, in its words (promptfoo/promptfoo#2573)
            raise malformed('#: subject must not be valid against schema {"required":["messages"]}'
                            "#/messages: expected minimum item count: 1, found: 0")
        _check_turns(raw_messages)
        messages = []
        points: list[CachePoint] = []  # where blocks carry cache_control: the prefix up to and with them
        for i, m in enumerate(raw_messages):
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
                raise malformed(f"#/messages/{i}/role: must be user or assistant")
            content = m.get("content", "")
            blocks: list[Block] = []
            for j, c in enumerate([content] if isinstance(content, str) else content):
                b = _block(c, f"#/messages/{i}/content/{j}")
                if b is not None:
                    blocks.append(b)
                if (ttl := _cache_ttl(c)) is not None:
                    points.append(CachePoint("messages", i, len(blocks), ttl))
            messages.append(Message(m["role"], tuple(blocks)))
        system = body.get("system")
        if isinstance(system, str):
            system_texts: tuple[str, ...] = (system,) if system else ()
        else:
            system_texts = tuple(s.get("text", "") for s in system or ())
            points += [CachePoint("system", j + 1, 0, ttl) for j, s in enumerate(system or ())
                       if (ttl := _cache_ttl(s)) is not None]
        raw_tools = optional(body, "tools", list) or ()
        tools = tuple(
            Tool(t["name"], t.get("description", ""), t.get("input_schema") or {"type": "object"}) for t in raw_tools
        )
        points += [CachePoint("tools", j + 1, 0, ttl) for j, t in enumerate(raw_tools)
                   if (ttl := _cache_ttl(t)) is not None]
        choice = None
        if len(points) > MAX_CACHE_POINTS_CLAUDE:
            raise ValidationError(too_many_cache_points(len(points)))
        if problem := claude_thinking_error(body.get("thinking"), max_tokens, body.get("temperature"), converse=False):
            raise ValidationError(problem)
        if problem := claude_sampler_error(model_id, body.get("temperature"), body.get("top_p")):
            raise ValidationError(problem)
        raw_choice = optional(body, "tool_choice", dict)
        if raw_choice is not None:
            if not tools:  # Claude's words, for a choice with nothing to choose from
                raise ValidationError(f"tool_choice.{raw_choice.get('type', 'auto')} may only be specified while "
                                      "providing tools")
            choice = ToolChoice(raw_choice.get("type", "auto"), raw_choice.get("name"))
        return ChatRequest(
            messages=tuple(messages),
            system=system_texts,
            max_tokens=max_tokens,
            temperature=optional(body, "temperature", NUMBER),
            top_p=optional(body, "top_p", NUMBER),
            top_k=optional(body, "top_k", int),
            stop_sequences=tuple(optional(body, "stop_sequences", list) or ()),
            tools=tools,
            tool_choice=choice,
            output_schema=_output_format(body),
            reasoning_budget=reasoning_budget(body.get("thinking")),
            cache_points=tuple(points),
        )

    def render(self, response: ChatResponse, request: ChatRequest, model_id: str, request_id: str) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        for b in response.content:
            if isinstance(b, Text):
                content.append({"type": "text", "text": b.text})
            elif isinstance(b, ToolUse):
                content.append({"type": "tool_use", "id": b.id, "name": b.name, "input": b.input})
            elif isinstance(b, Reasoning):
                content.append({"type": "thinking", "thinking": b.text, "signature": b.signature or ""})
        return {
            "id": _message_id(request_id),
            "type": "message",
            "role": "assistant",
            "model": _model_name(model_id),
            "content": content,
            "stop_reason": response.stop_reason,
            "stop_sequence": response.stop_sequence,
            "usage": _usage(response.usage),
        }

    async def stream(
        self, events: AsyncIterator[StreamEvent], request: ChatRequest, model_id: str, request_id: str
    ) -> AsyncIterator[dict[str, Any]]:
        stop: MessageStop | None = None
        thinking: set[int] = set()  # indexes of thinking blocks already started
        async for event in events:
            if isinstance(event, ReasoningDelta):
                if event.index not in thinking:
                    thinking.add(event.index)
                    yield {"type": "content_block_start", "index": event.index,
                           "content_block": {"type": "thinking", "thinking": "", "signature": ""}}
                delta = ({"type": "thinking_delta", "thinking": event.text} if event.text is not None
                         else {"type": "signature_delta", "signature": event.signature or ""})
                yield {"type": "content_block_delta", "index": event.index, "delta": delta}
            elif isinstance(event, MessageStart):
                yield {
                    "type": "message_start",
                    "message": {
                        "id": _message_id(request_id), "type": "message", "role": "assistant",
                        "model": _model_name(model_id), "content": [], "stop_reason": None,
                        "stop_sequence": None,
                        "usage": _usage(Usage(event.input_tokens or 0, 1, event.cache_read_tokens,
                                              event.cache_write_tokens)),
                    },
                }
            elif isinstance(event, BlockStart):
                block: dict[str, Any] = {"type": "text", "text": ""}
                if event.tool_use is not None:
                    block = {"type": "tool_use", "id": event.tool_use.id, "name": event.tool_use.name, "input": {}}
                yield {"type": "content_block_start", "index": event.index, "content_block": block}
            elif isinstance(event, BlockDelta):
                delta = (
                    {"type": "text_delta", "text": event.text}
                    if event.text is not None
                    else {"type": "input_json_delta", "partial_json": event.tool_input or ""}
                )
                yield {"type": "content_block_delta", "index": event.index, "delta": delta}
            elif isinstance(event, BlockStop):
                yield {"type": "content_block_stop", "index": event.index}
            elif isinstance(event, MessageStop):
                stop = event
            elif isinstance(event, Metadata) and stop is not None:
                yield {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop.stop_reason, "stop_sequence": stop.stop_sequence},
                    "usage": {"output_tokens": event.usage.output_tokens},
                }
                yield {"type": "message_stop"}


def _message_id(request_id: str) -> str:
    return "msg_bdrk_" + hashlib.sha256(request_id.encode()).hexdigest()[:24]


