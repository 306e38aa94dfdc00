"""The Converse API ↔ the neutral message form (Converse is the neutral form's own vocabulary).

Accepts what real clients send: empty ``system: []`` and ``inferenceConfig: {}`` (langchain),
``cachePoint`` and ``guardContent`` blocks (ignored), ``toolChoice`` as ``auto``/``any``/``tool``.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from itertools import pairwise
from typing import Any, Literal

import orjson

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
from outcrop.providers.tokens import count_text
from outcrop.wire.restjson import load_json_document

CONVERSATION_START = "A conversation must start with a user message. Try again with a conversation that starts with a user message."
ALTERNATE = (
    "A conversation must alternate between user and assistant roles. Make sure the conversation "
    "alternates between user and assistant roles and try again."
)
# Bedrock refuses an empty text block (a replayed turn that streamed an empty leading text block is the
# usual cause), naming where it is. One of only whitespace passes Bedrock's check, and Claude refuses it.
BLANK_TEXT = "The text field in the ContentBlock object at messages.{i}.content.{j} is blank. Add text to the text field, and try again."
WHITESPACE_TEXT_CLAUDE = "The model returned the following errors: messages: text content blocks must contain non-whitespace text"
EMPTY_CONTENT = ("The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the "
                 "content field and try again.")
DOCUMENT_WITHOUT_TEXT = "A text block must be included when using documents. Add a text block and retry your request."
TRAILING_WHITESPACE_CLAUDE = "messages: final assistant content cannot end with trailing whitespace"
MAX_CACHE_POINTS_CLAUDE = 4
# A document's name (which the model sees): the characters Bedrock allows, no two whitespace characters in a
# row. "report.pdf" fails for its period, the usual surprise.
DOCUMENT_NAME = re.compile(r"(?!.*\s\s)[A-Za-z0-9\s\-()\[\]]+")
BAD_DOCUMENT_NAME = (
    "The document file name can only contain alphanumeric characters, whitespace characters, hyphens, parentheses, "
    "and square brackets. The name can't contain more than one consecutive whitespace character. Check that the file "
    "name conforms to these restrictions and retry your request."
)
TOO_MANY_RESULTS = "The number of toolResult blocks at messages.{i}.content exceeds the number of toolUse blocks of previous turn."
MISSING_RESULTS = "Expected toolResult blocks at messages.{i}.content for the following Ids: {ids}"
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


def response_field_paths(params: Mapping[str, Any]) -> list[list[str]]:
    """``additionalModelResponseFieldPaths`` as RFC 6901 reference tokens; an ill-formed pointer is refused
    (400) before the model is called."""
    paths: list[list[str]] = []
    for pointer in params.get("additionalModelResponseFieldPaths") or ():
        tokens = pointer[1:].split("/") if pointer.startswith("/") else None
        if tokens is None or any("~" in t.replace("~0", "").replace("~1", "") for t in tokens):
            raise ValidationError(
                f"The JSON Pointer {pointer!r} in additionalModelResponseFieldPaths is not valid: a pointer starts "
                "with '/' and writes '~' as '~0' and '/' as '~1' (RFC 6901), as in '/stop_sequence'."
            )
        paths.append([t.replace("~1", "/").replace("~0", "~") for t in tokens])
    return paths


def pick_fields(native: Any, paths: list[list[str]]) -> dict[str, Any] | None:
    """The fields ``paths`` name in the model's own response, at the same places in a new object (a path
    the response does not have is left out, as at Bedrock); None when none is found."""
    out: dict[str, Any] = {}
    for tokens in paths:
        value, found = native, True
        for t in tokens:
            if isinstance(value, dict) and t in value:
                value = value[t]
            elif isinstance(value, list) and t.isdigit() and (t == "0" or t[0] != "0") and int(t) < len(value):
                value = value[int(t)]
            else:
                found = False
                break
        if found and tokens:
            node = out
            for t in tokens[:-1]:
                child = node.get(t)
                if not isinstance(child, dict):
                    child = node[t] = {}
                node = child
            node[tokens[-1]] = value
    return out or None


class StreamedResponse:
    """The response a ConverseStream's events add up to (content, stop, usage), for the fields of the
    model's own response that ``additionalModelResponseFieldPaths`` asks for."""

    def __init__(self) -> None:
        self.texts: dict[int, list[str]] = {}
        self.tools: dict[int, tuple[ToolUse, list[str]]] = {}
        self.reasoning: dict[int, tuple[list[str], list[str]]] = {}  # index → (text pieces, signature pieces)
        self.input_tokens = 0

    def add(self, event: StreamEvent) -> None:
        if isinstance(event, MessageStart):
            self.input_tokens = event.input_tokens or 0
        elif isinstance(event, BlockStart) and event.tool_use is not None:
            self.tools[event.index] = (event.tool_use, [])
        elif isinstance(event, ReasoningDelta):
            text, signature = self.reasoning.setdefault(event.index, ([], []))
            (text if event.text is not None else signature).append(event.text or event.signature or "")
        elif isinstance(event, BlockDelta):
            if event.index in self.tools:
                self.tools[event.index][1].append(event.tool_input or "")
            else:
                self.texts.setdefault(event.index, []).append(event.text or "")

    def response(self, stop: MessageStop, usage: Usage | None) -> ChatResponse:
        blocks: dict[int, Block] = {i: Text("".join(parts)) for i, parts in self.texts.items()}
        for i, (text, signature) in self.reasoning.items():
            blocks[i] = Reasoning("".join(text), "".join(signature) or None)
        for i, (tool, parts) in self.tools.items():
            try:
                tool_input = orjson.loads("".join(parts) or "{}")
            except orjson.JSONDecodeError:
                tool_input = {}
            blocks[i] = ToolUse(tool.id, tool.name, tool_input)
        usage = usage or Usage(self.input_tokens, count_text("".join("".join(p) for p in self.texts.values())))
        return ChatResponse(tuple(blocks[i] for i in sorted(blocks)), stop.stop_reason, usage, stop.stop_sequence)


def tool_result_items(
    content: Iterable[Mapping[str, Any]], image: Callable[[Mapping[str, Any], int], Block | None],
) -> tuple[Any, ...]:
    """A toolResult's content, neutral: text as ``str``, ``json`` as its value, an image as ``Image`` (read
    by ``image``, given the item and its index: the body's own reader of image blocks). Other items
    (documents, videos …) carry nothing a model here reads and are left out, never sent as ``null``."""
    items: list[Any] = []
    for k, c in enumerate(content):
        if "text" in c:
            items.append(c["text"])
        elif "json" in c:
            items.append(c["json"])
        elif "image" in c:
            items.append(image(c, k))
    return tuple(items)


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
        return ToolResult(t["toolUseId"], tool_result_items(t.get("content", ()), lambda c, _: _block(c)),
                          t.get("status"))
    if "reasoningContent" in raw:  # a model's earlier reasoning, sent back (redacted reasoning is left out)
        text = raw["reasoningContent"].get("reasoningText")
        return Reasoning(text.get("text", ""), text.get("signature")) if text else None
    return None  # cachePoint, guardContent, …: nothing for a model to read


# What Converse offers each model, as Bedrock's user guide tabulates it ("Supported models and model
# features"), by model-ID prefix; a model not named here has every feature. The answers are Bedrock's.
NO_SYSTEM_PROMPTS = ("amazon.titan-text-", "mistral.mistral-7b-", "mistral.mixtral-")
NO_TOOL_USE = (*NO_SYSTEM_PROMPTS, "meta.llama3-8b-", "meta.llama3-70b-", "meta.llama3-2-1b-", "meta.llama3-2-3b-",
               "deepseek.r1-")
NO_STREAMING_TOOL_USE = (*NO_TOOL_USE, "meta.llama3-1-", "meta.llama3-2-", "meta.llama3-3-", "meta.llama4-",
                         "mistral.mistral-large-")
# toolChoice beyond auto (Bedrock's ToolChoice reference: ``tool`` is Claude's and Nova's, ``any`` also
# Mistral Large's), by the model-ID prefixes known to lack it.
NO_TOOL_CHOICE = {"any": ("meta.", "cohere.", "mistral.mistral-small-"),
                  "tool": ("meta.", "cohere.", "mistral.")}
# Models whose turns Converse writes into a prompt template: a turn may hold tool results or conversation
# blocks (text, images, documents), not both.
SEPARATE_TOOL_RESULTS = ("meta.", "mistral.")
NO_SYSTEM = ("This model doesn't support system messages. Try again without a system message or use a model that "
             "supports system messages.")
NO_TOOLS = "This model doesn't support tool use."
NO_STREAMING_TOOLS = "This model doesn't support tool use in streaming mode."


def refuse_unsupported_features(params: Mapping[str, Any], model_id: str, inputs: Iterable[str], stream: bool) -> None:
    """Bedrock's ValidationException for a Converse feature the model lacks: a system prompt to Titan Text or
    Mistral 7B, tools to Llama 3 8B, tools in ConverseStream to Llama 3.1 or Mistral Large, an image to a model
    whose input modalities (``inputs``, the catalogue's) have none …"""
    # The kinds of content block in each turn, read once for every check below.
    turns = [{key for block in m.get("content") or () for key in block} for m in params.get("messages") or ()]
    present = set().union(*turns)
    for kind, modality in (("image", "IMAGE"), ("video", "VIDEO")):
        if kind in present and modality not in inputs:
            raise ValidationError(f"This model doesn't support the {kind} content block that you provided. "
                                  "Update the content block and try again.")
    if params.get("system") and model_id.startswith(NO_SYSTEM_PROMPTS):
        raise ValidationError(NO_SYSTEM)
    if params.get("toolConfig"):
        if model_id.startswith(NO_TOOL_USE):
            raise ValidationError(NO_TOOLS)
        if stream and model_id.startswith(NO_STREAMING_TOOL_USE):
            raise ValidationError(NO_STREAMING_TOOLS)
        for choice, lacking in NO_TOOL_CHOICE.items():
            if choice in (params["toolConfig"].get("toolChoice") or {}) and model_id.startswith(lacking):
                raise ValidationError(f"This model doesn't support the toolConfig.toolChoice.{choice} field. "
                                      f"Remove toolConfig.toolChoice.{choice} and try again.")
    if "toolResult" in present and model_id.startswith(SEPARATE_TOOL_RESULTS):
        for i, kinds in enumerate(turns):
            if "toolResult" in kinds and kinds - {"toolResult", "cachePoint"}:
                raise ValidationError(
                    f"messages.{i}.content: Conversation blocks and tool result blocks cannot be provided in the same turn.")


def chat_request(params: Mapping[str, Any], model_id: str = "") -> ChatRequest:
    """Converse's request, neutral. ``model_id`` (the foundation model's) says which model-specific fields
    of ``additionalModelRequestFields`` are read; all of them are also passed through as ``extra``."""
    messages: list[Message] = []
    points: list[CachePoint] = []
    uses_tools = False
    claude = model_id.startswith("anthropic.")
    raw_messages = params.get("messages") or ()
    for i, raw in enumerate(raw_messages):
        kept: list[Block] = []
        content = raw.get("content", ())
        if not content:
            raise ValidationError(EMPTY_CONTENT.format(i=i))
        for j, c in enumerate(content):
            if "document" in c:
                if not DOCUMENT_NAME.fullmatch(c["document"].get("name", "")):
                    raise ValidationError(BAD_DOCUMENT_NAME)
                if not any("text" in other and other["text"].strip() for other in content):
                    raise ValidationError(DOCUMENT_WITHOUT_TEXT)
            if "text" in c and not c["text"].strip():
                if not c["text"]:
                    raise ValidationError(BLANK_TEXT.format(i=i, j=j))
                if claude:
                    raise ValidationError(WHITESPACE_TEXT_CLAUDE)
            if "cachePoint" in c:
                points.append(CachePoint("messages", i, len(kept), cache_ttl(c["cachePoint"])))
            elif (b := _block(c)) is not None:
                kept.append(b)
        blocks = tuple(kept)
        uses_tools = uses_tools or any(isinstance(b, ToolUse | ToolResult) for b in blocks)
        messages.append(Message(raw["role"], blocks))
    if claude and messages and messages[-1].role == "assistant":
        last = [c for c in raw_messages[-1]["content"] if "cachePoint" not in c][-1:]
        if last and "text" in last[0] and last[0]["text"] != last[0]["text"].rstrip():
            raise ValidationError(f"The model returned the following errors: {TRAILING_WHITESPACE_CLAUDE}")
    if not messages or messages[0].role != "user":
        raise ValidationError(CONVERSATION_START)
    if any(a.role == b.role for a, b in pairwise(messages)):
        raise ValidationError(ALTERNATE)
    if uses_tools:
        _check_tool_turns(messages)
    config = params.get("inferenceConfig") or {}
    tool_config = params.get("toolConfig")
    if uses_tools and not tool_config:
        raise ValidationError(TOOL_CONFIG_NEEDED)
    tools: list[Tool] = []
    choice = None
    if tool_config:
        for t in tool_config.get("tools", ()):
            if "cachePoint" in t:
                points.append(CachePoint("tools", len(tools), 0, cache_ttl(t["cachePoint"])))
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
    output_schema = _output_schema(params.get("outputConfig"))
    extra = params.get("additionalModelRequestFields") or {}
    if not isinstance(extra, dict):  # a document member: any JSON value passes the shape
        raise ValidationError(EXTRA_FIELDS_NOT_OBJECT)
    extra = dict(extra)
    if claude and extra and ("messages" in extra or ("system" in extra and params.get("system"))):
        # Claude's request made from Converse's own fields already holds these (danny-avila/LibreChat#14246).
        key = "messages" if "messages" in extra else "system"
        raise ValidationError(f"The additional field {key} conflicts with an existing field.")
    top_k = extra.get("top_k", extra.get("topK"))
    thinking = extra.get("thinking")
    if claude and (
            problem := claude_thinking_error(thinking, config.get("maxTokens"), config.get("temperature"), converse=True)):
        raise ValidationError(f"The model returned the following errors: {problem}")
    if claude and (problem := claude_sampler_error(model_id, config.get("temperature"), config.get("topP"))):
        raise ValidationError(f"The model returned the following errors: {problem}")
    system: list[str] = []
    for entry in params.get("system") or ():
        if "text" in entry:
            system.append(entry["text"])
        elif "cachePoint" in entry:
            points.append(CachePoint("system", len(system), 0, cache_ttl(entry["cachePoint"])))
    if claude and len(points) > MAX_CACHE_POINTS_CLAUDE:
        raise ValidationError(f"The model returned the following errors: {too_many_cache_points(len(points))}")
    return ChatRequest(
        messages=tuple(messages),
        system=tuple(system),
        max_tokens=config.get("maxTokens"),
        temperature=config.get("temperature"),
        top_p=config.get("topP"),
        top_k=top_k if isinstance(top_k, int) else None,
        stop_sequences=tuple(config.get("stopSequences") or ()),
        tools=tuple(tools),
        tool_choice=choice,
        output_schema=output_schema,
        reasoning_budget=reasoning_budget(thinking),
        reasoning_effort=reasoning_effort(extra.get("reasoningConfig"), "additionalModelRequestFields.reasoningConfig",
                                          ValidationError) if reasons_by_effort(model_id) else None,
        cache_points=tuple(points),
        extra=extra,
        metadata=params.get("requestMetadata"),
    )


def too_many_cache_points(found: int) -> str:
    """Claude's refusal of more checkpoints than it takes (cachePoint blocks, or ``cache_control`` in its body)."""
    return f"A maximum of {MAX_CACHE_POINTS_CLAUDE} blocks with cache_control may be provided. Found {found}."


def _check_tool_turns(messages: list[Message]) -> None:
    """Bedrock's pairing of tool calls and results: each turn answers the previous turn's toolUse blocks with
    toolResult blocks, all of them and no more (the agent-loop bugs it reports most)."""
    for i, message in enumerate(messages):
        if message.role != "user":
            continue
        results = [b.tool_use_id for b in message.content if isinstance(b, ToolResult)]
        uses = [b.id for b in messages[i - 1].content if isinstance(b, ToolUse)] if i else []
        if len(results) > len(uses):
            raise ValidationError(TOO_MANY_RESULTS.format(i=i))
        missing = [u for u in uses if u not in results]
        if missing:
            raise ValidationError(MISSING_RESULTS.format(i=i, ids=", ".join(missing)))


def cache_ttl(point: Mapping[str, Any]) -> Literal["5m", "1h"]:
    """A cache point's TTL (Converse's ``cachePoint``, Claude's ``cache_control``): 1h if it says so, else 5m."""
    return "1h" if point.get("ttl") == "1h" else "5m"


DEFAULT_REASONING_BUDGET = 1024  # Claude's smallest budget_tokens


THINKING_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"


# Claude models that take a temperature or a top_p, not both (Anthropic's rule since Opus 4.1, which Bedrock
# passes on: BerriAI/litellm#15070 for Sonnet 4.5, aws-samples/bedrock-access-gateway#191 for Haiku 4.5,
# BoltAI/BoltAI#399 for Opus 4.1, skydiscover-ai/skydiscover#15 for Sonnet 4.6).
ONE_SAMPLER_CLAUDE = ("anthropic.claude-opus-4-1", "anthropic.claude-sonnet-4-5", "anthropic.claude-haiku-4-5",
                      "anthropic.claude-opus-4-5", "anthropic.claude-sonnet-4-6", "anthropic.claude-opus-4-6")
ONE_SAMPLER = "`temperature` and `top_p` cannot both be specified for this model. Please use only one."


def claude_sampler_error(model_id: str, temperature: Any, top_p: Any) -> str | None:
    """Claude's refusal of a temperature beside a top_p, for the models that take one of them only."""
    if temperature is not None and top_p is not None and model_id.startswith(ONE_SAMPLER_CLAUDE):
        return ONE_SAMPLER
    return None


def claude_thinking_error(thinking: Any, max_tokens: Any, temperature: Any, converse: bool) -> str | None:
    """What Claude says of a request that enables thinking against its rules (a budget under 1,024 tokens,
    ``max_tokens`` not above the budget, a temperature other than 1), in the words Bedrock passes on for
    Converse (``converse``) or InvokeModel; None when it keeps them."""
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if isinstance(budget, int) and not isinstance(budget, bool):
        if budget < DEFAULT_REASONING_BUDGET:
            return f"thinking.enabled.budget_tokens: Input should be greater than or equal to {DEFAULT_REASONING_BUDGET}"
        if isinstance(max_tokens, int) and max_tokens <= budget:
            return ("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at "
                    f"{THINKING_DOCS}#max-tokens-and-context-window-size")
    if temperature is not None and temperature != 1:
        if converse:
            return "temperature may only be set to 1 when thinking is enabled."
        return ("`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at "
                f"{THINKING_DOCS}#important-considerations-when-using-extended-thinking")
    return None


def reasoning_budget(thinking: Any) -> int | None:
    """The token budget of Claude's ``thinking`` (``{"type": "enabled", "budget_tokens": N}``), or None."""
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
        return None
    budget = thinking.get("budget_tokens")
    return budget if isinstance(budget, int) and not isinstance(budget, bool) and budget > 0 else DEFAULT_REASONING_BUDGET


REASONING_EFFORTS = ("low", "medium", "high")


def reasons_by_effort(model_id: str) -> bool:
    """Whether the model takes Nova 2's ``reasoningConfig`` (Nova 2 Lite and Pro; not the Nova 1 models)."""
    return model_id.startswith("amazon.nova-2-")


def reasoning_effort(config: Any, where: str, error: Callable[[str], Exception]) -> str | None:
    """The effort of Nova 2's ``reasoningConfig`` (``{"type": "enabled", "maxReasoningEffort": "low"}``), or
    None when it is absent or disabled. Enabled without an effort is "low"; a wrong shape raises ``error``
    with what to send instead."""
    if config is None:
        return None
    if not isinstance(config, dict):
        raise error(f"{where} must be an object such as {{\"type\": \"enabled\", \"maxReasoningEffort\": \"low\"}}.")
    kind = config.get("type", "disabled")
    if kind not in ("enabled", "disabled"):
        raise error(f"{where}.type must be enabled or disabled, not {kind!r}.")
    effort = config.get("maxReasoningEffort", "low")
    if effort not in REASONING_EFFORTS:
        raise error(f"{where}.maxReasoningEffort must be one of low, medium, high, not {effort!r}.")
    unknown = sorted(set(config) - {"type", "maxReasoningEffort"})
    if unknown:
        raise error(f"{where} has no field {unknown[0]!r}: it takes type and maxReasoningEffort.")
    return effort if kind == "enabled" else None


def _output_schema(config: Mapping[str, Any] | None) -> OutputSchema | None:
    """``outputConfig.textFormat``'s JSON Schema (a JSON text in the request), parsed."""
    text_format = (config or {}).get("textFormat")
    if not text_format:
        return None
    definition = (text_format.get("structure") or {}).get("jsonSchema")
    if definition is None:
        raise ValidationError("outputConfig.textFormat.structure must hold a jsonSchema for the json_schema type.")
    try:
        schema = load_json_document(definition["schema"])
    except orjson.JSONDecodeError as e:
        raise ValidationError(
            f"outputConfig.textFormat.structure.jsonSchema.schema is not valid JSON ({e.msg} at position {e.pos}). "
            "It is a JSON Schema written as a JSON string."
        ) from None
    except ValueError as e:
        raise ValidationError(f"outputConfig.textFormat.structure.jsonSchema.schema {e}.") from None
    if not isinstance(schema, dict):
        raise ValidationError("outputConfig.textFormat.structure.jsonSchema.schema must be a JSON Schema object.")
    return OutputSchema(schema, definition.get("name"), definition.get("description"))


def content_blocks(blocks: tuple[Block, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for b in blocks:
        if isinstance(b, Text):
            out.append({"text": b.text})
        elif isinstance(b, ToolUse):
            out.append({"toolUse": {"toolUseId": b.id, "name": b.name, "input": b.input}})
        elif isinstance(b, Reasoning):
            text: dict[str, Any] = {"text": b.text}
            if b.signature:
                text["signature"] = b.signature
            out.append({"reasoningContent": {"reasoningText": text}})
    return out


def usage_shape(u: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {"inputTokens": u.input_tokens, "outputTokens": u.output_tokens, "totalTokens": u.total_tokens}
    if u.cache_read_tokens:
        out["cacheReadInputTokens"] = u.cache_read_tokens
    if u.cache_write_tokens:
        out["cacheWriteInputTokens"] = u.cache_write_tokens
    if u.cache_writes:
        out["cacheDetails"] = [{"ttl": ttl, "inputTokens": tokens} for ttl, tokens in u.cache_writes]
    return out


def converse_output(response: ChatResponse, latency_ms: int) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": content_blocks(response.content)}},
        "stopReason": response.stop_reason,
        "usage": usage_shape(response.usage),
        "metrics": {"latencyMs": latency_ms},
    }


async def converse_events(
    events: AsyncIterator[StreamEvent], started: float, served: Mapping[str, Any] | None = None,
    native: Callable[[ChatResponse], Any] | None = None, paths: list[list[str]] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """ConverseStream's events; text blocks have no contentBlockStart, as at Bedrock. ``served`` (see
    ``served_as``) goes into the metadata event. With ``paths`` (``additionalModelResponseFieldPaths``) and
    ``native`` (the model's own response for a neutral one), messageStop carries the fields they name; it
    is then held until the usage that follows it is known (the two are the stream's last events)."""
    streamed = StreamedResponse() if paths and native is not None else None
    held: MessageStop | None = None
    async for event in events:
        if streamed is not None:
            streamed.add(event)
            if isinstance(event, MessageStop):
                held = event
                continue
            if held is not None:
                yield _message_stop(held, streamed, event.usage if isinstance(event, Metadata) else None, native, paths)
                held = None
        if isinstance(event, MessageStart):
            yield {"messageStart": {"role": event.role}}
        elif isinstance(event, BlockStart):
            if event.tool_use is not None:
                start = {"toolUse": {"toolUseId": event.tool_use.id, "name": event.tool_use.name}}
                yield {"contentBlockStart": {"start": start, "contentBlockIndex": event.index}}
        elif isinstance(event, BlockDelta):
            delta = {"text": event.text} if event.text is not None else {"toolUse": {"input": event.tool_input or ""}}
            yield {"contentBlockDelta": {"delta": delta, "contentBlockIndex": event.index}}
        elif isinstance(event, ReasoningDelta):
            piece = {"text": event.text} if event.text is not None else {"signature": event.signature or ""}
            yield {"contentBlockDelta": {"delta": {"reasoningContent": piece}, "contentBlockIndex": event.index}}
        elif isinstance(event, BlockStop):
            yield {"contentBlockStop": {"contentBlockIndex": event.index}}
        elif isinstance(event, MessageStop):
            yield {"messageStop": {"stopReason": event.stop_reason}}
        elif isinstance(event, Metadata):
            latency = int((time.monotonic() - started) * 1000)
            yield {"metadata": {"usage": usage_shape(event.usage), "metrics": {"latencyMs": latency}, **(served or {})}}
    if held is not None and streamed is not None:
        yield _message_stop(held, streamed, None, native, paths)


def _message_stop(
    stop: MessageStop, streamed: StreamedResponse, usage: Usage | None, native: Callable[[ChatResponse], Any],
    paths: list[list[str]],
) -> dict[str, Any]:
    out: dict[str, Any] = {"stopReason": stop.stop_reason}
    fields = pick_fields(native(streamed.response(stop, usage)), paths)
    if fields is not None:
        out["additionalModelResponseFields"] = fields
    return {"messageStop": out}
