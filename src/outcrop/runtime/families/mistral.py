"""Mistral: two InvokeModel body forms, told apart by the body.

* Text completion (every Mistral model): ``{"prompt", "max_tokens", "stop", …}`` →
  ``{"outputs": [{"text", "stop_reason"}]}``; stream chunks ``{"outputs": [{"text", "stop_reason"}]}``.
* Chat completion (Mistral Large and newer), a body with ``messages``:
  ``{"messages": [{"role": "system"|"user"|"assistant"|"tool", "content", "tool_calls", "tool_call_id"}],
  "tools": [{"type": "function", "function": {"name", "description", "parameters"}}],
  "tool_choice": "auto"|"any"|"none", "max_tokens", "temperature", "top_p"}`` →
  ``{"choices": [{"index": 0, "message": {"role": "assistant", "content", "tool_calls"}, "stop_reason"}]}``
  with ``stop_reason`` ``stop``, ``length`` or ``tool_calls``. Stream chunks have the same shape, each
  ``message`` one text delta and ``stop_reason`` null; the last chunk carries the stop reason and, when the
  model called tools, the whole ``tool_calls`` (as Mistral's own API sends them: one chunk, not fragments).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from outcrop.providers.messages import (
    Block,
    BlockDelta,
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Image,
    Message,
    MessageStop,
    StreamEvent,
    Text,
    Tool,
    ToolChoice,
    ToolResult,
    ToolUse,
)
from outcrop.runtime.families.base import NUMBER, malformed, optional, require, strings
from outcrop.runtime.families.prompt import prompt_request
from outcrop.runtime.families.schema import INTEGER, NUMERIC, STRING, STRINGS, BodySchema, params

# The members both forms share; the chat form's messages and tools are checked as they are read.
SCHEMA = BodySchema(params(prompt=STRING, max_tokens=INTEGER, temperature=NUMERIC, top_p=NUMERIC,
                        top_k=INTEGER, stop=STRINGS))

STOP = {"max_tokens": "length"}
CHAT_STOP = {"max_tokens": "length", "tool_use": "tool_calls"}
ROLES = ("system", "user", "assistant", "tool")
TOOL_CHOICES = ("auto", "any", "none")


@dataclass(slots=True)
class ChatFormRequest(ChatRequest):
    """A request that came in the chat-completion form, so it is answered in that form."""


class Mistral:
    name = "mistral"
    schema = SCHEMA

    def parse(self, body: Mapping[str, Any], model_id: str) -> ChatRequest:
        if "messages" in body:
            return _parse_chat(body)
        if "prompt" not in body:
            raise malformed("#: required key [prompt] not found (or [messages], for the chat-completion form)")
        return prompt_request(
            require(body, "prompt", str),
            optional(body, "max_tokens", int),
            optional(body, "temperature", NUMBER),
            optional(body, "top_p", NUMBER),
            optional(body, "top_k", int),
            strings(body, "stop"),
        )

    def render(self, response: ChatResponse, request: ChatRequest, model_id: str, request_id: str) -> dict[str, Any]:
        if isinstance(request, ChatFormRequest):
            message: dict[str, Any] = {"role": "assistant", "content": response.text()}
            calls = [_tool_call(b) for b in response.content if isinstance(b, ToolUse)]
            if calls:
                message["tool_calls"] = calls
            return {"choices": [{"index": 0, "message": message,
                                 "stop_reason": CHAT_STOP.get(response.stop_reason, "stop")}]}
        return {"outputs": [{"text": response.text(), "stop_reason": STOP.get(response.stop_reason, "stop")}]}

    async def stream(
        self, events: AsyncIterator[StreamEvent], request: ChatRequest, model_id: str, request_id: str
    ) -> AsyncIterator[dict[str, Any]]:
        if isinstance(request, ChatFormRequest):
            async for chunk in _chat_stream(events):
                yield chunk
            return
        async for event in events:
            if isinstance(event, BlockDelta) and event.text is not None:
                yield {"outputs": [{"text": event.text, "stop_reason": None}]}
            elif isinstance(event, MessageStop):
                yield {"outputs": [{"text": "", "stop_reason": STOP.get(event.stop_reason, "stop")}]}


async def _chat_stream(events: AsyncIterator[StreamEvent]) -> AsyncIterator[dict[str, Any]]:
    uses: dict[int, ToolUse] = {}
    inputs: dict[int, list[str]] = {}
    calls: list[dict[str, Any]] = []
    async for event in events:
        if isinstance(event, BlockStart) and event.tool_use is not None:
            uses[event.index], inputs[event.index] = event.tool_use, []
        elif isinstance(event, BlockDelta):
            if event.text is not None:
                yield _chunk({"role": "assistant", "content": event.text}, None)
            elif event.tool_input is not None and event.index in inputs:
                inputs[event.index].append(event.tool_input)
        elif isinstance(event, BlockStop) and event.index in uses:
            use = uses.pop(event.index)
            calls.append({"id": use.id, "type": "function",
                          "function": {"name": use.name, "arguments": "".join(inputs.pop(event.index)) or "{}"}})
        elif isinstance(event, MessageStop):
            message: dict[str, Any] = {"role": "assistant", "content": ""}
            if calls:
                message["tool_calls"] = calls
            yield _chunk(message, CHAT_STOP.get(event.stop_reason, "stop"))


def _chunk(message: dict[str, Any], stop_reason: str | None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": message, "stop_reason": stop_reason}]}


def _tool_call(use: ToolUse) -> dict[str, Any]:
    return {"id": use.id, "type": "function",
            "function": {"name": use.name, "arguments": orjson.dumps(use.input).decode()}}


def _parse_chat(body: Mapping[str, Any]) -> ChatFormRequest:
    raw_messages = require(body, "messages", list)
    if not raw_messages:
        raise malformed("#/messages: expected minimum item count: 1, found: 0")
    system: list[str] = []
    messages: list[Message] = []
    for i, m in enumerate(raw_messages):
        where = f"#/messages/{i}"
        if not isinstance(m, dict):
            raise malformed(f"{where}: expected type: JSONObject, found: {type(m).__name__}")
        role = m.get("role")
        if role not in ROLES:
            raise malformed(f"{where}/role: {role} is not a valid enum value (system, user, assistant or tool)")
        if role == "system":
            system.append(_text(m.get("content"), f"{where}/content"))
            continue
        blocks: list[Block]
        if role == "tool":
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise malformed(f"{where}: required key [tool_call_id] not found (the id of the tool call answered)")
            blocks = [ToolResult(call_id, (_text(m.get("content"), f"{where}/content"),))]
            role = "user"
        else:
            blocks = _content(m.get("content"), f"{where}/content")
            if role == "assistant":
                blocks += _tool_uses(m.get("tool_calls"), f"{where}/tool_calls")
            if not blocks:
                needs = "content or tool_calls" if role == "assistant" else "content"
                raise malformed(f"{where}: a {role} message needs {needs}")
        if messages and messages[-1].role == role:  # tool results then a user turn: one neutral user turn
            messages[-1] = Message(role, messages[-1].content + tuple(blocks))
        else:
            messages.append(Message(role, tuple(blocks)))
    if not messages:
        raise malformed("#/messages: a user message is required (the list holds only system messages)")
    choice = optional(body, "tool_choice", str)
    if choice is not None and choice not in TOOL_CHOICES:
        raise malformed(f"#/tool_choice: {choice} is not a valid enum value (auto, any or none)")
    return ChatFormRequest(
        messages=tuple(messages),
        system=tuple(system),
        max_tokens=optional(body, "max_tokens", int),
        temperature=optional(body, "temperature", NUMBER),
        top_p=optional(body, "top_p", NUMBER),
        stop_sequences=strings(body, "stop"),
        tools=_tools(optional(body, "tools", list) or ()),
        tool_choice=ToolChoice(choice) if choice else None,  # type: ignore[arg-type]
    )


def _text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    blocks = _content(content, where)
    return "".join(b.text for b in blocks if isinstance(b, Text))


def _content(content: Any, where: str) -> list[Block]:
    """A message's content: a string, or a list of ``text`` / ``image_url`` chunks (Pixtral)."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [Text(content)]
    if not isinstance(content, list):
        raise malformed(f"{where}: expected type: String|JSONArray, found: {type(content).__name__}")
    blocks: list[Block] = []
    for j, chunk in enumerate(content):
        kind = chunk.get("type") if isinstance(chunk, dict) else None
        if kind == "text" and isinstance(chunk.get("text"), str):
            blocks.append(Text(chunk["text"]))
        elif kind == "image_url":
            blocks.append(_image(chunk.get("image_url"), f"{where}/{j}/image_url"))
        else:
            raise malformed(f"{where}/{j}: expected a chunk of type text (with a string text) or image_url")
    return blocks


def _image(raw: Any, where: str) -> Image:
    url = raw.get("url") if isinstance(raw, dict) else raw
    if not isinstance(url, str) or not url.startswith("data:image/") or ";base64," not in url:
        raise malformed(f"{where}: expected a data:image/<format>;base64,<data> URL")
    head, data = url.split(";base64,", 1)
    try:
        return Image(head.removeprefix("data:image/"), base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        raise malformed(f"{where}: the image data is not valid base64") from None


def _tool_uses(raw: Any, where: str) -> list[Block]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise malformed(f"{where}: expected type: JSONArray, found: {type(raw).__name__}")
    uses: list[Block] = []
    for j, call in enumerate(raw):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise malformed(f"{where}/{j}: expected {{\"id\", \"function\": {{\"name\", \"arguments\"}}}}")
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            try:
                arguments = orjson.loads(arguments) if arguments.strip() else {}
            except orjson.JSONDecodeError:
                raise malformed(f"{where}/{j}/function/arguments: not a JSON object text") from None
        if not isinstance(arguments, dict):
            raise malformed(f"{where}/{j}/function/arguments: expected a JSON object (or its text)")
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            call_id = _call_id(function["name"], arguments)
        uses.append(ToolUse(call_id, function["name"], arguments))
    return uses


def _tools(raw: Any) -> tuple[Tool, ...]:
    tools = []
    for i, t in enumerate(raw):
        function = t.get("function") if isinstance(t, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise malformed(f"#/tools/{i}: expected {{\"type\": \"function\", \"function\": {{\"name\", \"description\", "
                            "\"parameters\"}}}}")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise malformed(f"#/tools/{i}/function/parameters: expected type: JSONObject (a JSON schema)")
        tools.append(Tool(function["name"], str(function.get("description") or ""), parameters))
    return tuple(tools)


def _call_id(name: str, arguments: Any) -> str:
    """Mistral's tool call ids are 9 alphanumerics; one the caller left out is made from the call."""
    return hashlib.sha256(orjson.dumps([name, arguments], option=orjson.OPT_SORT_KEYS)).hexdigest()[:9]
