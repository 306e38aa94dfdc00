"""The builtin model's prompt cache: Bedrock's cache checkpoints, as the usage figures see them.

A request's cache points (Converse ``cachePoint`` blocks in ``system``, ``messages`` and ``tools``; Claude's
``cache_control``) each mark a prefix: its tools, then its system texts, then its messages, up to the point.
A prefix of at least its model's minimum (``min_prefix_tokens``: 1,024 tokens by outcrop's token rule for
most models, 2,048 or 4,096 for some Claude models) is cached for its TTL (5 minutes,
or the point's ``1h``), which every hit starts again. A request reads the longest of its prefixes that is
cached and writes the tokens from there to its longest prefix: ``cacheReadInputTokens`` and
``cacheWriteInputTokens``, and its ``inputTokens`` are the rest. A point before the minimum is no error and
caches nothing, as at Bedrock.

The cache belongs to one account (``ChatRequest.cache_scope``) and one model, and to one server process, as
each Bedrock Region's is its own; it holds digests and expiry times, never prompts, at most ``MAX_ENTRIES``.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from outcrop.providers.messages import (
    CachePoint,
    ChatRequest,
    Image,
    Message,
    Text,
    ToolResult,
    ToolUse,
    Usage,
    cache_writes_by_ttl,
)
from outcrop.providers.tokens import count_request

MIN_PREFIX_TOKENS = 1024  # the minimum tokens per cache checkpoint of most models (Claude Sonnet and Opus 4, Nova)
# Models whose checkpoints need more, by model ID prefix: Bedrock's prompt-caching table, which Anthropic's
# own figures for the same models match.
MIN_PREFIX_TOKENS_BY_MODEL = (
    ("anthropic.claude-3-haiku-", 2048),
    ("anthropic.claude-3-5-haiku-", 2048),
    ("anthropic.claude-haiku-4-5-", 4096),
    ("anthropic.claude-opus-4-5-", 4096),
    ("anthropic.claude-opus-4-6", 4096),
)
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
MAX_ENTRIES = 100_000


@dataclass(frozen=True)
class Prefix:
    tokens: int
    digest: bytes
    ttl: str


def prefixes(request: ChatRequest, model_id: str) -> list[Prefix]:
    """The prefix each of the request's cache points marks, with its token count and digest."""
    out = []
    for point in request.cache_points:
        part = _prefix_of(request, point)
        key = orjson.dumps([
            request.cache_scope, model_id,
            [[t.name, t.description, t.input_schema] for t in part.tools],
            list(part.system),
            [[m.role, [_key(b) for b in m.content]] for m in part.messages],
        ], option=orjson.OPT_SORT_KEYS)
        out.append(Prefix(count_request(part), hashlib.sha256(key).digest(), point.ttl))
    return out


def _prefix_of(request: ChatRequest, point: CachePoint) -> ChatRequest:
    if point.where == "tools":
        return ChatRequest(messages=(), tools=request.tools[: point.count])
    if point.where == "system":
        return ChatRequest(messages=(), tools=request.tools, system=request.system[: point.count])
    messages = request.messages[: point.count]
    if point.count < len(request.messages):
        m = request.messages[point.count]
        messages += (Message(m.role, m.content[: point.block]),)
    return ChatRequest(messages=messages, tools=request.tools, system=request.system)


def _key(block: object) -> Any:
    if isinstance(block, Text):
        return ["text", block.text]
    if isinstance(block, ToolUse):
        return ["tool_use", block.id, block.name, block.input]
    if isinstance(block, ToolResult):
        return ["tool_result", block.tool_use_id, block.text()]
    if isinstance(block, Image):
        return ["image", block.format, hashlib.sha256(block.data).hexdigest()]
    return [type(block).__name__]


def min_prefix_tokens(model_id: str) -> int:
    """The fewest tokens a prefix of ``model_id`` needs to be cached."""
    for prefix, tokens in MIN_PREFIX_TOKENS_BY_MODEL:
        if model_id.startswith(prefix):
            return tokens
    return MIN_PREFIX_TOKENS


class PromptCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._expiry: OrderedDict[bytes, float] = OrderedDict()
        self._clock = clock

    def apply(self, request: ChatRequest, model_id: str, usage: Usage, minimum: int = MIN_PREFIX_TOKENS) -> Usage:
        """``usage`` with the cache's reads and writes taken out of its input tokens; ``model_id`` names
        the cache (the model, in its Region), ``minimum`` is its model's ``min_prefix_tokens``."""
        eligible = [p for p in prefixes(request, model_id) if p.tokens >= minimum]
        if not eligible:
            return usage
        now = self._clock()
        read = max((p.tokens for p in eligible if self._expiry.get(p.digest, 0.0) > now), default=0)
        longest = max(p.tokens for p in eligible)
        write = longest - read
        for p in eligible:  # a hit starts its TTL again; what was written starts its own
            self._expiry[p.digest] = max(self._expiry.get(p.digest, 0.0), now + TTL_SECONDS[p.ttl])
            self._expiry.move_to_end(p.digest)
        while len(self._expiry) > MAX_ENTRIES:
            self._expiry.popitem(last=False)
        cached = min(read + write, usage.input_tokens)
        written = cached - min(read, cached)
        return replace(usage, input_tokens=usage.input_tokens - cached, cache_read_tokens=min(read, cached),
                       cache_write_tokens=written, cache_writes=_writes_by_ttl(eligible, read, written))


def _writes_by_ttl(eligible: list[Prefix], read: int, written: int) -> tuple[tuple[str, int], ...]:
    """``written`` tokens from ``read`` on, by TTL: each stretch up to a cache point has that point's TTL."""
    by_ttl: dict[str, int] = {}
    done, left = read, written
    for p in sorted(eligible, key=lambda p: p.tokens):
        if left <= 0:
            break
        stretch = min(p.tokens - done, left)
        if stretch > 0:
            by_ttl[p.ttl] = by_ttl.get(p.ttl, 0) + stretch
            done, left = done + stretch, left - stretch
    return cache_writes_by_ttl(by_ttl)
