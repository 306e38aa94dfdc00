"""One rich InvokeModel body per model family, and a mutator that breaks it at any depth.

Every family's body with what outcrop reads in it (tools, images, tool results, reasoning, every inference
parameter). The fuzz test sends them mutated over the wire; the schema unit test holds outcrop's body
schemas to jsonschema's verdicts on the same mutations.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
BODY_SEEDS: dict[str, dict[str, Any]] = {
    HAIKU: {
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "temperature": 0.5, "top_p": 0.9, "top_k": 5,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "stop_sequences": ["x"], "tool_choice": {"type": "auto"},
        "tools": [{"name": "get_weather", "description": "w", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "weather?"}, {"type": "image", "source": {
                "type": "base64", "media_type": "image/png", "data": PNG}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                          "content": [{"type": "text", "text": "sunny"}]}]}]},
    "anthropic.claude-3-7-sonnet-20250219-v1:0": {
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 2000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hm", "signature": "abc"}, {"type": "text", "text": "yo"}]},
            {"role": "user", "content": "again"}]},
    "amazon.nova-lite-v1:0": {
        "schemaVersion": "messages-v1", "system": [{"text": "Be brief."}, {"cachePoint": {"type": "default"}}],
        "messages": [
            {"role": "user", "content": [{"text": "weather?"}, {"image": {"format": "png", "source": {"bytes": PNG}}}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather",
                                                           "input": {"city": "Paris"}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "status": "success",
                                                         "content": [{"json": {"t": 1}}, {"text": "sunny"}]}}]}],
        "inferenceConfig": {"max_new_tokens": 64, "temperature": 0.5, "topP": 0.9, "topK": 5, "stopSequences": ["x"]},
        "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather", "description": "w",
                                               "inputSchema": {"json": {"type": "object"}}}}],
                       "toolChoice": {"auto": {}}}},
    "amazon.nova-2-lite-v1:0": {
        "schemaVersion": "messages-v1", "messages": [
            {"role": "user", "content": [{"text": "hi"}]},
            {"role": "assistant", "content": [{"reasoningContent": {"reasoningText": {"text": "x"}}}, {"text": "a"}]},
            {"role": "user", "content": [{"text": "again"}]}],
        "inferenceConfig": {"max_new_tokens": 64, "reasoningConfig": {"type": "enabled", "maxReasoningEffort": "low"}}},
    "meta.llama3-8b-instruct-v1:0": {"prompt": "Hello", "max_gen_len": 64, "temperature": 0.5, "top_p": 0.9},
    "amazon.titan-text-express-v1": {"inputText": "Hello", "textGenerationConfig": {
        "maxTokenCount": 64, "temperature": 0.5, "topP": 0.9, "stopSequences": ["User:"]}},
    "mistral.mistral-7b-instruct-v0:2": {"prompt": "<s>[INST] Hello [/INST]", "max_tokens": 64, "temperature": 0.5,
                                         "top_p": 0.9, "top_k": 5, "stop": ["x"]},
    "mistral.mistral-large-2402-v1:0": {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "weather?"},
                     {"role": "assistant", "content": "", "tool_calls": [{"id": "abcdefghi", "function": {
                         "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                     {"role": "tool", "tool_call_id": "abcdefghi", "content": "sunny"}],
        "max_tokens": 64, "tool_choice": "auto", "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "w", "parameters": {"type": "object"}}}]},
    "cohere.command-r-v1:0": {
        "message": "weather?", "preamble": "p", "max_tokens": 64, "temperature": 0.5, "p": 0.9, "k": 5,
        "chat_history": [{"role": "USER", "message": "hi"}, {"role": "CHATBOT", "message": "yo"}],
        "documents": [{"title": "t", "snippet": "s"}], "stop_sequences": ["x"],
        "tools": [{"name": "get_weather", "description": "w", "parameter_definitions": {
            "city": {"type": "str", "description": "c", "required": True}}}]},
    "amazon.titan-embed-text-v2:0": {"inputText": "hello", "dimensions": 256, "normalize": True},
    "cohere.embed-english-v3": {"texts": ["hello"], "input_type": "search_document", "truncate": "NONE"},
}
BODY_VALUES: list[Any] = [None, True, False, 0, -1, 2**63, -(2**63) - 1, 1.0, 1.5, -1e308, 1e300, "7", "", "\x00", "🦜",
                          "x" * 5000, [], {}, [None], {"": None}, [[[]]], {"a": {"a": [[[[]]]]}}, [1] * 3000,
                          "'; DROP TABLE inference_profiles; --", "../../etc/passwd"]


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield from _nodes(child, (*path, key))


def mutated_body(rng: random.Random, body: dict[str, Any], times: int = 1) -> Any:
    """``body`` mutated ``times`` times over (or fewer, once it is no longer an object)."""
    for _ in range(times):
        if not isinstance(body, dict):
            break
        body = _mutated_once(rng, body)
    return body


def _mutated_once(rng: random.Random, body: dict[str, Any]) -> Any:
    """``body`` with one node replaced by another type, deleted, given a stray member or repeated."""
    path = rng.choice(list(_nodes(body)))
    if not path:
        return rng.choice(BODY_VALUES)
    body = copy.deepcopy(body)
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    node, roll = parent[path[-1]], rng.random()
    if roll < 0.1:
        del parent[path[-1]]
    elif roll < 0.2 and isinstance(node, dict):
        node[rng.choice(["x", "type", "text", "json", "bytes", "content", "toolUse", "image"])] = rng.choice(BODY_VALUES)
    elif roll < 0.3 and isinstance(node, list):
        parent[path[-1]] = node * rng.choice([0, 2, 40])
    else:
        parent[path[-1]] = rng.choice(BODY_VALUES)
    return body
