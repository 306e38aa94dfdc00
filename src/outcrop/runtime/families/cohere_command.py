"""Cohere Command R / R+: the chat body (Cohere's v1 chat) ↔ the neutral form, tool use included.

Request: ``{"message", "chat_history": [{"role": "USER"|"CHATBOT"|"SYSTEM"|"TOOL", "message", "tool_calls",
"tool_results"}], "preamble", "tools": [{"name", "description", "parameter_definitions": {name: {"description",
"type", "required"}}}], "tool_results": [{"call": {"name", "parameters"}, "outputs": [{…}]}], "max_tokens",
"temperature", "p", "k", "stop_sequences", …}``. Answer: ``{"response_id", "text", "generation_id",
"chat_history", "finish_reason", "tool_calls": [{"name", "parameters"}]}``. Stream events (``event_type``):
``stream-start``, ``text-generation``…, ``tool-calls-generation`` (the whole calls), ``stream-end`` (with the
whole answer in ``response``).

Cohere's tool calls carry no id: a result names its call by tool name and parameters. The neutral form
needs ids, so each call gets one from its position (``cohere_call_<n>``) and each result the id of the
call it repeats. When the request holds results but no turn with their calls (the caller sent only the
question and ``tool_results``), the calls are restored from the results, as the turn before them.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from outcrop.providers.messages import (
    Block,
    BlockDelta,
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Message,
    MessageStop,
    Metadata,
    StreamEvent,
    Text,
    Tool,
    ToolResult,
    ToolUse,
)
from outcrop.runtime.families.base import NUMBER, malformed, optional, strings
from outcrop.runtime.families.schema import (
    INTEGER,
    NUMERIC,
    OBJECT,
    STRING,
    STRINGS,
    BodySchema,
    array,
    params,
)

# Scalars and lists; history turns, tools and tool results are checked as they are read.
SCHEMA = BodySchema(params(
    message=STRING, preamble=STRING, chat_history=array(OBJECT), tools=array(OBJECT), tool_results=array(OBJECT),
    documents=array(OBJECT), max_tokens=INTEGER, temperature=NUMERIC, p=NUMERIC, k=INTEGER,
    stop_sequences=STRINGS,
))

FINISH = {"max_tokens": "MAX_TOKENS", "content_filtered": "ERROR_TOXIC"}  # anything else: COMPLETE
ROLES = ("USER", "CHATBOT", "SYSTEM", "TOOL")
# Cohere's parameter types are Python's; a JSON schema type is also taken as it is.
TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "list": "array",
         "dict": "object", "string": "string", "integer": "integer", "number": "number", "boolean": "boolean",
         "array": "array", "object": "object"}


class CohereCommand:
    name = "cohere-command"
    schema = SCHEMA

    def parse(self, body: Mapping[str, Any], model_id: str) -> ChatRequest:
        message = optional(body, "message", str) or ""
        tool_results = optional(body, "tool_results", list) or []
        if not message and not tool_results:
            if "message" not in body:
                raise malformed("#: required key [message] not found")
            raise malformed("#/message: must not be empty unless tool_results are given")
        preamble = optional(body, "preamble", str)
        conversation = _Conversation()
        if preamble:
            conversation.system.append(preamble)
        for i, turn in enumerate(optional(body, "chat_history", list) or ()):
            conversation.turn(turn, f"#/chat_history/{i}")
        if message:
            conversation.add("user", [Text(message)])
        if tool_results:
            conversation.results(tool_results, "#/tool_results")
        return ChatRequest(
            messages=tuple(conversation.messages),
            system=tuple(conversation.system),
            max_tokens=optional(body, "max_tokens", int),
            temperature=optional(body, "temperature", NUMBER),
            top_p=optional(body, "p", NUMBER),
            top_k=optional(body, "k", int),
            stop_sequences=strings(body, "stop_sequences"),
            tools=tuple(_tool(t, f"#/tools/{i}") for i, t in enumerate(optional(body, "tools", list) or ())),
        )

    def render(self, response: ChatResponse, request: ChatRequest, model_id: str, request_id: str) -> dict[str, Any]:
        return _answer(_ids(request_id), request, response.content, FINISH.get(response.stop_reason, "COMPLETE"))

    async def stream(
        self, events: AsyncIterator[StreamEvent], request: ChatRequest, model_id: str, request_id: str
    ) -> AsyncIterator[dict[str, Any]]:
        ids, finish = _ids(request_id), "COMPLETE"
        text: list[str] = []
        uses: dict[int, ToolUse] = {}
        inputs: dict[int, list[str]] = {}
        calls: list[ToolUse] = []
        yield {"is_finished": False, "event_type": "stream-start", "generation_id": ids[1]}
        async for event in events:
            if isinstance(event, BlockStart) and event.tool_use is not None:
                uses[event.index], inputs[event.index] = event.tool_use, []
            elif isinstance(event, BlockDelta):
                if event.text is not None:
                    text.append(event.text)
                    yield {"is_finished": False, "event_type": "text-generation", "text": event.text}
                elif event.tool_input is not None and event.index in inputs:
                    inputs[event.index].append(event.tool_input)
            elif isinstance(event, BlockStop) and event.index in uses:
                use = uses.pop(event.index)
                calls.append(ToolUse(use.id, use.name, _json_object("".join(inputs.pop(event.index)))))
            elif isinstance(event, MessageStop):
                finish = FINISH.get(event.stop_reason, "COMPLETE")
                if calls:
                    yield {"is_finished": False, "event_type": "tool-calls-generation", "text": "".join(text),
                           "tool_calls": [_call(c) for c in calls]}
            elif isinstance(event, Metadata):
                content: tuple[Block, ...] = (Text("".join(text)), *calls)
                yield {"is_finished": True, "event_type": "stream-end", "finish_reason": finish,
                       "response": _answer(ids, request, content, finish)}


class _Conversation:
    """Neutral messages built turn by turn; consecutive turns of one role merge (results, then a question)."""

    def __init__(self) -> None:
        self.system: list[str] = []
        self.messages: list[Message] = []
        self.calls = 0

    def add(self, role: str, blocks: list[Block]) -> None:
        if not blocks:
            return
        if self.messages and self.messages[-1].role == role:
            self.messages[-1] = Message(role, self.messages[-1].content + tuple(blocks))  # type: ignore[arg-type]
        else:
            self.messages.append(Message(role, tuple(blocks)))  # type: ignore[arg-type]

    def use(self, name: str, parameters: dict[str, Any]) -> ToolUse:
        self.calls += 1
        return ToolUse(f"cohere_call_{self.calls}", name, parameters)

    def turn(self, turn: Any, where: str) -> None:
        if not isinstance(turn, dict):
            raise malformed(f"{where}: expected type: JSONObject, found: {type(turn).__name__}")
        role = str(turn.get("role", "")).upper()
        if role not in ROLES:
            raise malformed(f"{where}/role: {turn.get('role')} is not a valid enum value (USER, CHATBOT, SYSTEM or TOOL)")
        text = turn.get("message")
        if text is not None and not isinstance(text, str):
            raise malformed(f"{where}/message: expected type: String, found: {type(text).__name__}")
        if role == "TOOL":
            self.results(turn.get("tool_results"), f"{where}/tool_results")
        elif role == "SYSTEM":
            if text:
                self.system.append(text)
        elif role == "USER":
            self.add("user", [Text(text)] if text else [])
        else:
            calls = turn.get("tool_calls") or []
            if not isinstance(calls, list):
                raise malformed(f"{where}/tool_calls: expected type: JSONArray, found: {type(calls).__name__}")
            blocks: list[Block] = [Text(text)] if text else []
            blocks += [self.use(*_call_of(c, f"{where}/tool_calls/{j}")) for j, c in enumerate(calls)]
            self.add("assistant", blocks)

    def results(self, raw: Any, where: str) -> None:
        """Tool results: each answers the call it repeats in the turn before, else a call restored here."""
        if not isinstance(raw, list) or not raw:
            raise malformed(f"{where}: expected a non-empty array of {{\"call\": {{\"name\", \"parameters\"}}, \"outputs\"}}")
        last = self.messages[-1] if self.messages and self.messages[-1].role == "assistant" else None
        open_calls = [b for b in last.content if isinstance(b, ToolUse)] if last else []
        restored: list[Block] = []
        results: list[Block] = []
        for j, result in enumerate(raw):
            call = result.get("call") if isinstance(result, dict) else None
            name, parameters = _call_of(call, f"{where}/{j}/call")
            outputs = result.get("outputs")
            if not isinstance(outputs, list):
                raise malformed(f"{where}/{j}/outputs: expected an array of objects")
            match = next((u for u in open_calls if u.name == name and u.input == parameters), None)
            if match is None:
                match = self.use(name, parameters)
                restored.append(match)
            else:
                open_calls.remove(match)
            results.append(ToolResult(match.id, tuple(outputs)))
        if restored:
            self.add("assistant", restored)
        self.add("user", results)


def _answer(ids: tuple[str, str], request: ChatRequest, content: tuple[Block, ...], finish: str) -> dict[str, Any]:
    text = "".join(b.text for b in content if isinstance(b, Text))
    calls = [b for b in content if isinstance(b, ToolUse)]
    out: dict[str, Any] = {
        "response_id": ids[0],
        "text": text,
        "generation_id": ids[1],
        "chat_history": _history(request, Message("assistant", tuple(content))),
        "finish_reason": finish,
    }
    if calls:
        out["tool_calls"] = [_call(c) for c in calls]
    return out


def _history(request: ChatRequest, reply: Message) -> list[dict[str, Any]]:
    """The conversation as Cohere returns it, the reply included, for the caller to send back."""
    names = {b.id: b for m in request.messages for b in m.content if isinstance(b, ToolUse)}
    history: list[dict[str, Any]] = []
    for m in (*request.messages, reply):
        text = "".join(b.text for b in m.content if isinstance(b, Text))
        if m.role == "assistant":
            turn: dict[str, Any] = {"role": "CHATBOT", "message": text}
            calls = [_call(b) for b in m.content if isinstance(b, ToolUse)]
            if calls:
                turn["tool_calls"] = calls
            history.append(turn)
            continue
        results = [b for b in m.content if isinstance(b, ToolResult)]
        if results:
            history.append({"role": "TOOL", "tool_results": [
                {"call": _call(names[r.tool_use_id]) if r.tool_use_id in names else {"name": r.tool_use_id,
                                                                                       "parameters": {}},
                 "outputs": [c if isinstance(c, dict) else {"text": c} for c in r.content]}
                for r in results]})
        if text:
            history.append({"role": "USER", "message": text})
    return history


def _call(use: ToolUse) -> dict[str, Any]:
    return {"name": use.name, "parameters": use.input}


def _call_of(raw: Any, where: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise malformed(f"{where}: expected {{\"name\": string, \"parameters\": object}}")
    parameters = raw.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise malformed(f"{where}/parameters: expected type: JSONObject, found: {type(parameters).__name__}")
    return raw["name"], parameters


def _tool(raw: Any, where: str) -> Tool:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise malformed(f"{where}: expected {{\"name\", \"description\", \"parameter_definitions\"}}")
    definitions = raw.get("parameter_definitions") or {}
    if not isinstance(definitions, dict):
        raise malformed(f"{where}/parameter_definitions: expected type: JSONObject, found: {type(definitions).__name__}")
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, spec in definitions.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("type", "str"), str):
            raise malformed(f"{where}/parameter_definitions/{name}: expected {{\"description\", \"type\", \"required\"}}")
        properties[name] = _schema(spec.get("type", "str"))
        if spec.get("description"):
            properties[name]["description"] = str(spec["description"])
        if spec.get("required"):
            required.append(name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return Tool(raw["name"], str(raw.get("description") or ""), schema)


def _schema(kind: str) -> dict[str, Any]:
    """``str`` → string, ``List[int]`` → array of integers, ``Dict[str, Any]`` → object; unknown: string."""
    base, _, inner = kind.strip().partition("[")
    json_type = TYPES.get(base.strip().lower(), "string")
    if json_type == "array" and inner:
        return {"type": "array", "items": _schema(inner.rstrip("]").split(",")[0])}
    return {"type": json_type}


def _json_object(text: str) -> Any:
    try:
        return orjson.loads(text) if text.strip() else {}
    except orjson.JSONDecodeError:
        return {}


def _ids(request_id: str) -> tuple[str, str]:
    h = hashlib.sha256(request_id.encode()).hexdigest()
    return str(uuid.UUID(h[:32])), str(uuid.UUID(h[32:]))

