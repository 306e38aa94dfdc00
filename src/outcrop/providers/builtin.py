"""The builtin model: deterministic, offline, the default backend of every catalogue model in every Region.

Same request → same reply. The reply is a sentence of words drawn from a fixed vocabulary by the
SHA-256 of the request (its messages, system prompt, tools and settings), so a test can pin it. Rules:

* Tools: when the request offers tools, ``toolChoice`` is not ``none`` and the last user message holds
  no tool result, the model calls a tool: the one ``toolChoice`` names, else the first tool whose name
  appears in the last user message, else the first tool. Its input fills each required property (all
  properties when none is required) from the JSON schema: a string gets a vocabulary word, an integer
  a number from the hash, a boolean ``true``, an enum its first value. After a tool result it answers
  with text that quotes the result: ``Tool <name> returned: <result>.``
* Stop conditions: ``max_tokens`` cuts the reply (stopReason ``max_tokens``); a stop sequence found in
  the reply cuts it before the sequence (``stop_sequence``).
* Reasoning: Claude's ``thinking`` gives a reasoning block before the answer (one token per streamed
  delta, at most its budget) with a signature. Nova 2's ``reasoningConfig`` (read for Nova 2 models only)
  gives reasoning the model does not show, as Nova 2 Lite does: one block reading ``[REDACTED]``, no
  signature, while the reasoning's tokens (1, 3 or 8 times a reply's length for low, medium and high
  effort) count as output; the answer is the one the same request gets without reasoning.
* Tokens follow ``outcrop.providers.tokens``; each streamed text delta is exactly one token.
* Pacing: ``ttft_ms`` before the first token, then ``tokens_per_second`` (0: no delay).
* Embeddings: unit vectors of the requested dimension, from the SHA-256 of each text.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import math
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from outcrop.errors import ValidationError
from outcrop.providers.base import Target
from outcrop.providers.instances import SchemaTooDeep, instance
from outcrop.providers.messages import (
    Block,
    BlockDelta,
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    MessageStart,
    MessageStop,
    Metadata,
    Reasoning,
    ReasoningDelta,
    StopReason,
    StreamEvent,
    Text,
    Tool,
    ToolResult,
    ToolUse,
    Usage,
)
from outcrop.providers.prompt_cache import PromptCache, min_prefix_tokens
from outcrop.providers.tokens import count_request, count_text, split_tokens

VOCABULARY = ["granite", "basalt", "quartz", "shale", "slate", "marble", "gneiss", "schist", "chalk", "flint", "jasper", "agate", "onyx", "obsidian", "pumice", "tuff", "ridge", "ledge", "cliff", "scarp", "mesa", "butte", "canyon", "gorge", "valley", "river", "delta", "fjord", "glacier", "moraine", "dune", "plateau", "summit", "crag", "bluff", "terrace", "bedrock", "stratum", "seam", "vein", "fault", "fold", "dome", "arch", "cave", "grotto", "spring", "geyser", "crater", "caldera", "lava", "magma", "crystal", "mineral", "pebble", "cobble", "boulder", "sand", "silt"]
DEFAULT_LENGTH = (12, 40)  # words, before max_tokens


def _digest(request: ChatRequest, model_id: str) -> bytes:
    canonical = orjson.dumps(
        {
            "model": model_id,
            "system": request.system,
            "messages": [[m.role, [_block_key(b) for b in m.content]] for m in request.messages],
            "tools": [t.name for t in request.tools],
            "temperature": request.temperature,
            "top_p": request.top_p,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).digest()


def _block_key(block: object) -> Any:
    if isinstance(block, Text):
        return block.text
    if isinstance(block, ToolUse):
        return [block.id, block.name, block.input]
    if isinstance(block, ToolResult):
        return [block.tool_use_id, block.text()]
    return type(block).__name__


class _Stream:
    """A deterministic byte stream from a digest (SHA-256 in counter mode)."""

    def __init__(self, seed: bytes) -> None:
        self.seed, self.counter, self.buffer = seed, 0, b""

    def byte(self) -> int:
        if not self.buffer:
            self.buffer = hashlib.sha256(self.seed + self.counter.to_bytes(8, "big")).digest()
            self.counter += 1
        b, self.buffer = self.buffer[0], self.buffer[1:]
        return b

    def word(self) -> str:
        return VOCABULARY[self.byte() % len(VOCABULARY)]

    def length(self) -> int:
        """A reply's length in words, within ``DEFAULT_LENGTH``."""
        return DEFAULT_LENGTH[0] + self.byte() % (DEFAULT_LENGTH[1] - DEFAULT_LENGTH[0])


@dataclass(frozen=True)
class Plan:
    """The whole reply, decided before any of it is sent."""

    deltas: tuple[str, ...]  # text deltas, one token each
    tool_use: ToolUse | None
    stop_reason: StopReason
    stop_sequence: str | None
    usage: Usage
    reasoning: tuple[str, ...] = ()  # reasoning deltas, before the answer, when the request asked for it
    signature: str | None = None

    @property
    def content(self) -> tuple[Block, ...]:
        answer: Block = self.tool_use if self.tool_use else Text("".join(self.deltas))
        if not self.reasoning:
            return (answer,)
        return Reasoning("".join(self.reasoning), self.signature), answer


def plan_reply(request: ChatRequest, model_id: str) -> Plan:
    digest = _digest(request, model_id)
    rng = _Stream(digest)
    input_tokens = count_request(request)
    reasoning, signature, thought = _reasoning(request, rng, digest)
    tool = _tool_to_call(request)
    if tool is not None:
        tool_input = _filled(tool.input_schema, rng, f"the input schema of tool {tool.name}")
        use = ToolUse("tooluse_" + hashlib.sha256(digest + b"tool").hexdigest()[:22], tool.name, tool_input)
        output = count_text(use.name) + count_text(orjson.dumps(tool_input).decode())
        return Plan((), use, "tool_use", None, Usage(input_tokens, thought + output), reasoning, signature)
    text = _reply_text(request, rng)
    deltas, stop_reason, stop_sequence = _apply_stops(text, request)
    usage = Usage(input_tokens, thought + count_text("".join(deltas)))
    return Plan(tuple(deltas), None, stop_reason, stop_sequence, usage, reasoning, signature)


REDACTED = "[REDACTED]"  # what Nova 2 Lite shows of its reasoning
EFFORT_LENGTH = {"low": 1, "medium": 3, "high": 8}  # hidden reasoning, in replies' lengths


def _reasoning(request: ChatRequest, rng: _Stream, digest: bytes) -> tuple[tuple[str, ...], str | None, int]:
    """Reasoning deltas as shown, their signature, and the reasoning's tokens, when the request asked for it."""
    if request.reasoning_budget is not None:
        n = rng.length()
        text = "Thinking it over: " + " ".join(rng.word() for _ in range(n)) + "."
        deltas = _deltas(text)[: request.reasoning_budget]
        signature = base64.b64encode(hashlib.sha256(digest + "".join(deltas).encode()).digest()).decode()
        return tuple(deltas), signature, count_text("".join(deltas))
    if request.reasoning_effort is not None:  # drawn apart, so the answer is the one given without it
        hidden = _Stream(digest + b"reasoning")
        n = hidden.length() * EFFORT_LENGTH[request.reasoning_effort]
        return (REDACTED,), None, count_text(" ".join(hidden.word() for _ in range(n)))
    return (), None, 0


def _reply_text(request: ChatRequest, rng: _Stream) -> str:
    if request.output_schema is not None:  # structured output: the whole reply is one JSON document
        return orjson.dumps(_filled(request.output_schema.schema, rng, "outputConfig's JSON schema")).decode()
    last = request.messages[-1] if request.messages else None
    results = [b for b in last.content if isinstance(b, ToolResult)] if last and last.role == "user" else []
    if results:
        names = {b.id: b.name for m in request.messages for b in m.content if isinstance(b, ToolUse)}
        return " ".join(f"Tool {names.get(r.tool_use_id, r.tool_use_id)} returned: {r.text()}." for r in results)
    words = [rng.word() for _ in range(rng.length())]
    return " ".join(words).capitalize() + "."


def _filled(schema: dict[str, Any], rng: _Stream, what: str) -> Any:
    try:
        return instance(schema, rng)
    except SchemaTooDeep as e:
        raise ValidationError(f"{e} The builtin model cannot answer {what}.") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:  # a keyword of an unexpected type
        raise ValidationError(
            f"The builtin model cannot fill {what}: a keyword has a value JSON Schema does not allow "
            f"({type(e).__name__}: {e})."
        ) from None


def _deltas(text: str) -> list[str]:
    """``text`` as stream deltas: each token with the space before it."""
    deltas: list[str] = []
    pos = 0
    for token in split_tokens(text):
        start = text.index(token, pos)
        deltas.append(text[pos:start] + token)
        pos = start + len(token)
    return deltas


def _apply_stops(text: str, request: ChatRequest) -> tuple[list[str], StopReason, str | None]:
    """``text``'s deltas, cut at a stop sequence or at max_tokens."""
    deltas = _deltas(text)
    emitted = ""
    for i, delta in enumerate(deltas):
        candidate = emitted + delta
        for seq in request.stop_sequences:
            if seq and seq in candidate:
                # The sequence may begin in an earlier delta than the one that completes it: keep the
                # deltas wholly before it, and of the one it begins in, the part before it.
                cut = candidate[: candidate.index(seq)]
                kept: list[str] = []
                pos = 0
                for piece in deltas[: i + 1]:
                    if pos + len(piece) > len(cut):
                        if cut[pos:].strip():
                            kept.append(cut[pos:])
                        break
                    kept.append(piece)
                    pos += len(piece)
                return _limit(kept, request, "stop_sequence", seq)
        emitted = candidate
    return _limit(deltas, request, "end_turn", None)


def _limit(
    deltas: list[str], request: ChatRequest, reason: StopReason, seq: str | None
) -> tuple[list[str], StopReason, str | None]:
    if request.max_tokens is not None and len(deltas) > request.max_tokens:
        return deltas[: request.max_tokens], "max_tokens", None
    return deltas, reason, seq


def _tool_to_call(request: ChatRequest) -> Tool | None:
    if not request.tools or not request.messages:
        return None
    choice = request.tool_choice
    if choice is not None and choice.mode == "none":
        return None
    last = request.messages[-1]
    if last.role != "user" or any(isinstance(b, ToolResult) for b in last.content):
        return None
    if choice is not None and choice.mode == "tool":
        return next((t for t in request.tools if t.name == choice.name), request.tools[0])
    said = last.text().lower()
    return next((t for t in request.tools if t.name.lower() in said), request.tools[0])


class BuiltinProvider:
    """Serves every deployment whose backend is ``builtin``."""

    def __init__(self) -> None:
        self.cache = PromptCache()

    def _plan(self, target: Target, request: ChatRequest) -> Plan:
        plan = plan_reply(request, target.model_id)
        if not request.cache_points:
            return plan
        # A Region's cache is its own, as at Bedrock.
        where = f"{target.region}/{target.model_id}"
        usage = self.cache.apply(request, where, plan.usage, min_prefix_tokens(target.model_id))
        return dataclasses.replace(plan, usage=usage)

    async def chat(self, target: Target, request: ChatRequest) -> ChatResponse:
        plan = self._plan(target, request)
        await self._pace(target, plan)
        return ChatResponse(plan.content, plan.stop_reason, plan.usage, plan.stop_sequence)

    async def _pace(self, target: Target, plan: Plan) -> None:
        d = target.deployment
        delay = d.ttft_ms / 1000
        if d.tokens_per_second > 0:
            delay += max(len(plan.reasoning) + len(plan.deltas), 1) / d.tokens_per_second
        if delay > 0:
            await asyncio.sleep(delay)

    async def chat_stream(self, target: Target, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        plan = self._plan(target, request)
        d = target.deployment
        if d.ttft_ms > 0:
            await asyncio.sleep(d.ttft_ms / 1000)
        gap = 1 / d.tokens_per_second if d.tokens_per_second > 0 else 0.0
        yield MessageStart("assistant", plan.usage.input_tokens, plan.usage.cache_read_tokens,
                           plan.usage.cache_write_tokens)
        at = 0
        if plan.reasoning:
            for i, piece in enumerate(plan.reasoning):
                if gap and i:
                    await asyncio.sleep(gap)
                yield ReasoningDelta(0, text=piece)
            if plan.signature is not None:
                yield ReasoningDelta(0, signature=plan.signature)
            yield BlockStop(0)
            at = 1
        if plan.tool_use is not None:
            use = plan.tool_use
            yield BlockStart(at, use)
            yield BlockDelta(at, tool_input=orjson.dumps(use.input).decode())
            yield BlockStop(at)
        else:
            yield BlockStart(at)
            for i, delta in enumerate(plan.deltas):
                if gap and (i or at):
                    await asyncio.sleep(gap)
                yield BlockDelta(at, text=delta)
            yield BlockStop(at)
        yield MessageStop(plan.stop_reason, plan.stop_sequence)
        yield Metadata(plan.usage)

    async def embed(self, target: Target, request: EmbedRequest) -> EmbedResponse:
        vectors = tuple(_embedding(text, request.dimensions, request.normalize) for text in request.texts)
        return EmbedResponse(vectors, Usage(sum(count_text(t) for t in request.texts), 0))

    async def close(self) -> None:
        return None


def _embedding(text: str, dimensions: int, normalize: bool) -> tuple[float, ...]:
    rng = _Stream(hashlib.sha256(text.encode()).digest())
    raw = []
    for _ in range(dimensions):
        b = bytes(rng.byte() for _ in range(2))
        raw.append(struct.unpack(">h", b)[0] / 32768)
    if normalize:
        norm = math.sqrt(sum(x * x for x in raw)) or 1.0
        raw = [x / norm for x in raw]
    return tuple(round(x, 6) for x in raw)
