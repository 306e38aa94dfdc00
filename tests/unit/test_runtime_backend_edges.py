"""What real backends and clients send at the edges: tool calls streamed without an index or id, or
ended with "stop"; images in tool results and user turns; error bodies of any shape; stop sequences
that span tokens. Each test failed before its fix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson

from outcrop.providers.bedrock import converse_body
from outcrop.providers.builtin import plan_reply
from outcrop.providers.messages import (
    BlockStart,
    ChatRequest,
    Message,
    MessageStop,
    Metadata,
    Text,
    ToolResult,
)
from outcrop.providers.openai import _completion, _translate_sse, chat_body
from outcrop.providers.tokens import count_request
from outcrop.runtime.converse import StreamedResponse, chat_request

HELLO = chat_request({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})


async def _lines(chunks: list[dict[str, Any]]) -> AsyncIterator[str]:
    for chunk in chunks:
        yield "data: " + orjson.dumps(chunk).decode()
    yield "data: [DONE]"


def _events(chunks: list[dict[str, Any]], request: ChatRequest = HELLO) -> list[Any]:
    async def run() -> list[Any]:
        return [e async for e in _translate_sse(_lines(chunks), request)]

    return asyncio.run(run())


def _streamed(events: list[Any]) -> Any:
    streamed = StreamedResponse()
    for e in events:
        streamed.add(e)
    stop = next(e for e in events if isinstance(e, MessageStop))
    usage = next(e for e in events if isinstance(e, Metadata)).usage
    return streamed.response(stop, usage)


def _call(call_id: str, name: str, arguments: str, index: int | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    if index is not None:
        call["index"] = index
    return call


def test_openai_stream_tool_call_finished_with_stop_is_tool_use_as_unary() -> None:
    # gpt-4o, Gemini's and older Ollama's OpenAI layers end a streamed tool call with finish_reason "stop";
    # the unary answer of the same backend is already tool_use, and agent loops branch on it.
    events = _events([{"choices": [{"delta": {"tool_calls": [_call("c1", "f", '{"a": 1}', 0)]}}]},
                      {"choices": [{"delta": {}, "finish_reason": "stop"}]}])
    unary = _completion({"choices": [{"message": {"tool_calls": [_call("c1", "f", '{"a": 1}')]},
                                      "finish_reason": "stop"}]}, HELLO)
    assert unary.stop_reason == "tool_use"
    assert next(e for e in events if isinstance(e, MessageStop)).stop_reason == "tool_use"


def test_openai_stream_tool_calls_without_index_or_sharing_index_stay_separate() -> None:
    # Gemini's OpenAI layer sends each call whole, with no index (or every one at index 0).
    for first, second in ((None, None), (0, 0)):
        events = _events([{"choices": [{"delta": {"tool_calls": [_call("c1", "f", '{"a": 1}', first)]}}]},
                          {"choices": [{"delta": {"tool_calls": [_call("c2", "g", '{"b": 2}', second)]}}]},
                          {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}])
        starts = [e.tool_use for e in events if isinstance(e, BlockStart)]
        assert [(u.id, u.name) for u in starts] == [("c1", "f"), ("c2", "g")]
        response = _streamed(events)
        assert [(b.id, b.name, b.input) for b in response.content] == [("c1", "f", {"a": 1}), ("c2", "g", {"b": 2})]


def test_openai_stream_continuation_chunks_of_one_call_stay_one_block() -> None:
    # The usual OpenAI shape (id on the first piece only) and servers that repeat the id on every piece.
    for repeat in (False, True):
        events = _events([
            {"choices": [{"delta": {"tool_calls": [_call("c1", "f", "", 0)]}}]},
            {"choices": [{"delta": {"tool_calls": [{"index": 0, **({"id": "c1"} if repeat else {}),
                                                    "function": {"arguments": '{"a": '}}]}}]},
            {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}}]},
            {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}])
        response = _streamed(events)
        assert [(b.id, b.input) for b in response.content] == [("c1", {"a": 1})]


def test_openai_usage_counted_by_outcrop_is_the_same_streamed_and_unary() -> None:
    # A backend that reports no usage: outcrop's rule counts a tool call's name and input, and reasoning,
    # whichever operation asked.
    unary = _completion({"choices": [{"message": {"reasoning_content": "think hard",
                                                  "tool_calls": [_call("c1", "lookup", '{"city": "Paris"}')]},
                                      "finish_reason": "tool_calls"}]}, HELLO)
    events = _events([{"choices": [{"delta": {"reasoning_content": "think hard"}}]},
                      {"choices": [{"delta": {"tool_calls": [_call("c1", "lookup", '{"city": "Paris"}', 0)]}}]},
                      {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}])
    streamed = next(e for e in events if isinstance(e, Metadata)).usage
    assert unary.usage.output_tokens == streamed.output_tokens
    assert unary.usage.output_tokens >= 2 + 1 + 6  # reasoning, the tool's name, its input's JSON


IMAGE_RESULT = {"messages": [
    {"role": "user", "content": [{"text": "look"}]},
    {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "shot", "input": {}}}]},
    {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [
        {"text": "the screen"}, {"image": {"format": "png", "source": {"bytes": b"\x89PNG"}}}]}}]},
], "toolConfig": {"tools": [{"toolSpec": {"name": "shot", "inputSchema": {"json": {"type": "object"}}}}]}}


def test_converse_tool_result_image_is_not_turned_into_json_null() -> None:
    request = chat_request(IMAGE_RESULT)
    result = request.messages[2].content[0]
    assert isinstance(result, ToolResult)
    assert result.text() == "the screen"  # not "the screen\nnull"
    tool_message = next(m for m in chat_body(request, "m", False)["messages"] if m["role"] == "tool")
    assert tool_message["content"] == "the screen"
    upstream = converse_body(request)["messages"][2]["content"][0]["toolResult"]["content"]
    assert upstream[0] == {"text": "the screen"}
    assert upstream[1]["image"]["format"] == "png"  # carried upstream, not {"json": null}
    assert count_request(request) == count_request(chat_request({**IMAGE_RESULT, "messages": [
        *IMAGE_RESULT["messages"][:2], {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [
            {"text": "the screen"}]}}]}]}))


def test_builtin_stop_sequence_spanning_tokens_leaves_none_of_it_in_the_reply() -> None:
    request = ChatRequest(messages=(Message("user", (Text("Hi"),)),))
    words = "".join(plan_reply(request, "anthropic.claude-3-haiku-20240307-v1:0").deltas).split()
    for seq in (f"{words[1]} {words[2]}", f"{words[1][-2:]} {words[2][:2]}"):
        stopped = ChatRequest(messages=request.messages, stop_sequences=(seq,))
        plan = plan_reply(stopped, "anthropic.claude-3-haiku-20240307-v1:0")
        text = "".join(plan.deltas)
        full = " ".join(words)
        assert plan.stop_reason == "stop_sequence" and plan.stop_sequence == seq
        assert text == full[: full.index(seq)].rstrip(), (seq, text)


def test_openai_error_bodies_of_any_shape_become_the_aws_error_with_the_backend_message() -> None:
    from outcrop.errors import ModelError, ValidationError
    from outcrop.providers.openai import _error

    # A null or non-string message was a TypeError, so the caller got a 500 InternalServerException.
    for body in ('{"error": {"message": null, "type": "server_error"}}', '{"error": {"message": 5}}'):
        error = _error(500, body)
        assert isinstance(error, ModelError) and isinstance(error.message, str)
    # vLLM's flat error body: its message, not the whole JSON text.
    error = _error(400, '{"object": "error", "message": "bad model", "type": "NotFoundError", "code": 400}')
    assert isinstance(error, ValidationError) and error.message == "bad model"


def test_openai_tool_calls_without_an_id_get_one_bedrock_accepts_back() -> None:
    # Bedrock's toolUseId is 1-64 of [a-zA-Z0-9_-]; botocore refuses an empty one when the caller replays it.
    import re

    unary = _completion({"choices": [{"message": {"tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"type": "function", "function": {"name": "g", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}]}, HELLO)
    events = _events([{"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{}"}},
                                                             {"index": 1, "function": {"name": "g", "arguments": "{}"}}]}}]},
                      {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}])
    for ids in ([b.id for b in unary.content], [e.tool_use.id for e in events if isinstance(e, BlockStart)]):
        assert len(ids) == 2 and len(set(ids)) == 2
        assert all(re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", i) for i in ids), ids


def test_openai_backend_sends_a_user_image_as_an_image_url_part() -> None:
    # An image in a Converse turn was dropped on the way to the OpenAI-compatible server: the model answered
    # without it. It goes as a data URL content part, as vLLM, Ollama and llama.cpp take images.
    request = chat_request({"messages": [{"role": "user", "content": [
        {"text": "what is this?"}, {"image": {"format": "png", "source": {"bytes": b"\x89PNG"}}}]}]})
    (message,) = chat_body(request, "m", False)["messages"]
    assert message["content"] == [{"type": "text", "text": "what is this?"},
                                  {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw=="}}]
    assert chat_body(HELLO, "m", False)["messages"] == [{"role": "user", "content": "hi"}]  # text alone: a string


def test_claude_body_tool_result_image_is_an_image_not_its_base64_as_text() -> None:
    from outcrop.runtime.families.anthropic import Anthropic

    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": [
        {"role": "user", "content": "look"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
            {"type": "text", "text": "the screen"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw=="}}]}]}],
        "tools": [{"name": "shot", "input_schema": {"type": "object"}}]}
    request = Anthropic().parse(body, "anthropic.claude-3-haiku-20240307-v1:0")
    result = request.messages[2].content[0]
    assert isinstance(result, ToolResult) and result.text() == "the screen"  # not the image block's JSON
    upstream = converse_body(request)["messages"][2]["content"][0]["toolResult"]["content"]
    assert upstream[1] == {"image": {"format": "png", "source": {"bytes": "iVBORw=="}}}


def test_openai_tool_call_cut_off_by_the_token_limit_is_max_tokens_not_tool_use() -> None:
    """A caller that sees tool_use runs the tool with an input that was cut short."""
    unary = _completion({"choices": [{"message": {"tool_calls": [_call("c1", "f", '{"city": "Par')]},
                                      "finish_reason": "length"}]}, HELLO)
    assert unary.stop_reason == "max_tokens"
    done = _completion({"choices": [{"message": {"tool_calls": [_call("c1", "f", "{}")]},
                                     "finish_reason": "tool_calls"}]}, HELLO)
    assert done.stop_reason == "tool_use"


def test_an_error_event_in_an_openai_stream_is_a_stream_error_with_the_backends_message() -> None:
    """vLLM and LiteLLM send a failure after the stream has begun as ``data: {"error": {…}}``: it was
    skipped, and the caller got "ended without finishing" without the reason."""
    import pytest

    from outcrop.errors import ModelStreamError

    with pytest.raises(ModelStreamError) as failed:
        _events([{"choices": [{"delta": {"content": "Hel"}}]},
                 {"error": {"message": "CUDA out of memory", "type": "InternalServerError", "code": 500}}])
    assert "CUDA out of memory" in str(failed.value)
    with pytest.raises(ModelStreamError, match="overloaded"):
        _events([{"error": "overloaded"}])


def test_openai_stream_chunk_with_a_null_error_member_is_not_a_failure() -> None:
    # Proxies that serialize every field of their chunk model send "error": null alongside a normal chunk;
    # the final usage chunk has no choices. Before the mid-stream error events this stream was fine.
    events = _events([{"choices": [{"delta": {"content": "hello"}}]},
                      {"choices": [{"delta": {}, "finish_reason": "stop"}]},
                      {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}, "error": None}])
    assert next(e for e in events if isinstance(e, MessageStop)).stop_reason == "end_turn"
    assert next(e for e in events if isinstance(e, Metadata)).usage.output_tokens == 1


def test_openai_stream_call_whose_id_comes_after_its_first_piece_stays_one_call() -> None:
    # The call's index says it is one call; its id arriving on a later piece does not start another.
    events = _events([
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": ""}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"arguments": '{"a": 1}'}}]}}]},
        {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}])
    response = _streamed(events)
    assert [(b.name, b.input) for b in response.content] == [("f", {"a": 1})]
