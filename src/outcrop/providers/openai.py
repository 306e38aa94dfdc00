"""Any OpenAI-compatible chat-completions server (vLLM, Ollama, llama.cpp server, LM Studio …).

``POST {url}/chat/completions`` with the neutral request translated to chat messages (system first,
tool calls and ``tool`` messages for tool use and results); streaming with SSE ``data:`` lines until
``[DONE]``, asking for usage in the last chunk (``stream_options.include_usage``). Usage comes from the
backend; only a backend that reports none is counted by outcrop's own rule.

Failures are AWS errors: 429 → ThrottlingException; timeout → ModelTimeoutException; connection
refused, 502, 503 → ServiceUnavailableException; other 5xx → ModelErrorException; 400/422 →
ValidationException with the backend's message; a stream cut short → ModelStreamErrorException.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from outcrop.deadlines import within
from outcrop.errors import (
    ModelError,
    ModelStreamError,
    ModelTimeout,
    ServiceError,
    ServiceUnavailable,
    Throttled,
    ValidationError,
)
from outcrop.providers.base import MALFORMED, Target
from outcrop.providers.http11 import Client, HTTPError, Response
from outcrop.providers.messages import (
    BlockDelta,
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    Image,
    MessageStart,
    MessageStop,
    Metadata,
    Reasoning,
    ReasoningDelta,
    StopReason,
    StreamEvent,
    Text,
    ToolResult,
    ToolUse,
    Usage,
)
from outcrop.providers.tokens import count_request, count_text

FINISH: dict[str, StopReason] = {
    "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
    "content_filter": "content_filtered",
}
TIMEOUT_MESSAGE = "Model has timed out in processing the request. Try your request again."


def chat_body(request: ChatRequest, model: str, stream: bool) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": "\n\n".join(request.system)})
    for m in request.messages:
        results = [b for b in m.content if isinstance(b, ToolResult)]
        for r in results:
            messages.append({"role": "tool", "tool_call_id": r.tool_use_id, "content": r.text()})
        uses = [b for b in m.content if isinstance(b, ToolUse)]
        text = m.text()
        if uses:
            messages.append({
                "role": "assistant", "content": text or None,
                "tool_calls": [{"id": u.id, "type": "function",
                                "function": {"name": u.name, "arguments": orjson.dumps(u.input).decode()}}
                               for u in uses],
            })
        elif any(isinstance(b, Image) for b in m.content):
            # The message's text and images, in order, as content parts (vision models: vLLM, Ollama …).
            parts = [{"type": "text", "text": b.text} if isinstance(b, Text) else {
                "type": "image_url", "image_url": {"url": f"data:image/{b.format};base64,"
                                                          f"{base64.b64encode(b.data).decode()}"}}
                     for b in m.content if isinstance(b, Text | Image)]
            messages.append({"role": m.role, "content": parts})
        elif text or not results:
            messages.append({"role": m.role, "content": text})
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    for key, value in (("max_tokens", request.max_tokens), ("temperature", request.temperature),
                       ("top_p", request.top_p)):
        if value is not None:
            body[key] = value
    if request.stop_sequences:
        body["stop"] = list(request.stop_sequences)
    if request.reasoning_effort is not None:  # Nova 2's reasoningConfig: the same three levels
        body["reasoning_effort"] = request.reasoning_effort
    if request.output_schema is not None:
        schema = request.output_schema
        json_schema: dict[str, Any] = {"name": schema.name or "response", "schema": schema.schema, "strict": True}
        if schema.description:
            json_schema["description"] = schema.description
        body["response_format"] = {"type": "json_schema", "json_schema": json_schema}
    if request.tools:
        body["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                           "parameters": t.input_schema}} for t in request.tools]
        choice = request.tool_choice
        if choice is not None:
            body["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}.get(choice.mode) or {
                "type": "function", "function": {"name": choice.name}}
    return body


def _reasoning_of(message: Mapping[str, Any]) -> str | None:
    """A reasoning model's thinking, where OpenAI-compatible servers put it: vLLM, SGLang and LM Studio
    ``reasoning_content``, newer vLLM and Ollama ``reasoning``."""
    value = message.get("reasoning_content") or message.get("reasoning")
    return value if isinstance(value, str) else None


def _tool_use_id() -> str:
    """An id for a tool call the backend sent without one: Bedrock's toolUseId is never empty, and a caller
    sends it back with the call's result."""
    return "tooluse_" + secrets.token_hex(11)


def _arguments(raw: str | None) -> Any:
    try:
        return orjson.loads(raw or "{}")
    except orjson.JSONDecodeError:
        return {"arguments": raw}


def _usage(raw: Any, request: ChatRequest, output_text: str) -> Usage:
    """The backend's token counts; a count it leaves out (or sends as anything but a whole number) is
    counted here, by the rule CountTokens uses."""
    if raw.__class__ is not dict:
        raw = {}
    details = raw.get("prompt_tokens_details")
    cached = (_tokens(details.get("cached_tokens")) if details.__class__ is dict else None) or 0
    prompt = _tokens(raw.get("prompt_tokens"))
    completion = _tokens(raw.get("completion_tokens"))
    if prompt is None:
        prompt = count_request(request) + cached
    if completion is None:
        completion = count_text(output_text)
    # OpenAI's prompt_tokens include the cached ones; Bedrock's inputTokens do not.
    return Usage(max(prompt - cached, 0), completion, min(cached, prompt))


def _tokens(value: Any) -> int | None:
    if value.__class__ is int and value >= 0:  # not a bool: its class is bool
        return value  # type: ignore[no-any-return]
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


# Reading a backend's answer checks each member's JSON type only where a wrong one would not fail on its own
# (a value that is not an object or a list fails at ``.get`` or at iteration: AttributeError or TypeError,
# which the callers turn into ModelErrorException / modelStreamErrorException).
def _completion(payload: Any, request: ChatRequest) -> ChatResponse:
    """A chat completion's answer, neutral (raises TypeError and the like on one of the wrong shape)."""
    choice = payload["choices"][0]
    message = choice.get("message") or {}
    content: list[Text | ToolUse | Reasoning] = []
    reasoning = _reasoning_of(message)
    if reasoning:
        content.append(Reasoning(reasoning))
    text = message.get("content") or ""
    if text.__class__ is not str:
        text = _text(text)
    if text:
        content.append(Text(text))
    stop = FINISH.get(choice.get("finish_reason") or "stop", "end_turn")
    output = [reasoning or "", text]  # counted as output when the backend reports no usage, as in a stream
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        name, arguments = _string(fn.get("name")), _string(fn.get("arguments"))
        content.append(ToolUse(_string(call.get("id")) or _tool_use_id(), name, _arguments(arguments)))
        output += [name, arguments]
        if stop != "max_tokens":  # a call cut off by the token limit is not a finished call
            stop = "tool_use"
    return ChatResponse(tuple(content), stop, _usage(payload.get("usage"), request, " ".join(output)))


def _stream_chunk(chunk: Any) -> tuple[Any, Any]:
    """A ``chat.completion.chunk``'s usage and choices, their text made strings (raises TypeError and the
    like on one of the wrong shape)."""
    choices = chunk.get("choices") or ()
    for choice in choices:
        delta = choice.get("delta")
        if delta is None:
            choice["delta"] = delta = {}
        content = delta.get("content")
        if content is not None and content.__class__ is not str:
            delta["content"] = _text(content)
        for call in delta.get("tool_calls") or ():
            fn = call.get("function") or {}
            _string(fn.get("name")), _string(fn.get("arguments")), _string(call.get("id"))
            if call.get("index", 0).__class__ is not int:
                raise TypeError("a tool call's index is not an integer")
        finish = choice.get("finish_reason")
        if finish is not None and finish.__class__ is not str:
            raise TypeError("finish_reason is not a string")
    return chunk.get("usage"), choices


def _message_of(error: Any) -> str | None:
    """The message of a backend's error member: OpenAI's ``{"message": …}``, or Ollama's plain string."""
    message = error.get("message") if error.__class__ is dict else error
    return message if message.__class__ is str and message else None


def _stream_failure(error: Any, data: str) -> ModelStreamError:
    """An error the backend sent as a stream event (vLLM, LiteLLM, OpenAI: ``data: {"error": {…}}``), with
    its message, as Bedrock's mid-stream error."""
    message = _message_of(error) or data[:500]
    code = error.get("code") if error.__class__ is dict else None
    status = code if code.__class__ is int and 400 <= code < 600 else 500
    return ModelStreamError(f"The model backend failed during the stream: {message[:1000]}",
                            originalStatusCode=status, originalMessage=message[:1000])


def _string(value: Any) -> str:
    if value is None:
        return ""
    if value.__class__ is not str:
        raise TypeError(f"expected a string, found {type(value).__name__}")
    return value  # type: ignore[no-any-return]


def _text(value: Any) -> str:
    """A message's ``content``: a string, or (as some servers send) a list of ``{"type": "text"}`` parts."""
    if value.__class__ is list:
        return "".join(_string(part.get("text")) for part in value if part.get("type") == "text")
    return _string(value)


def _error(status: int, text: str) -> ServiceError:
    try:
        payload = orjson.loads(text)
    except orjson.JSONDecodeError:
        payload = None
    # OpenAI's {"error": {"message"}}, Ollama's {"error": "…"}, vLLM's older {"object": "error", "message"}.
    message = None
    if isinstance(payload, dict):
        detail = payload.get("error")
        message = _message_of(detail if detail is not None else payload)
    message = (message or text)[:1000] or f"HTTP {status}"
    if status == 429:
        return Throttled("Too many requests, please wait before trying again.")
    if status in (408, 504):
        return ModelTimeout(TIMEOUT_MESSAGE)
    if status in (502, 503):
        return ServiceUnavailable(f"The model backend is unavailable: {message}")
    if status in (400, 422):
        return ValidationError(message)
    return ModelError(f"The model backend returned HTTP {status}: {message}", originalStatusCode=status)


class OpenAIProvider:
    def __init__(self) -> None:
        self.client = Client()

    async def _send(self, target: Target, request: ChatRequest, stream: bool) -> Response:
        """POST the chat completion and read the answer's head; transport failures become AWS errors."""
        d = target.deployment
        headers = {"content-type": "application/json", "accept": "text/event-stream" if stream else "application/json"}
        if d.api_key:
            headers["authorization"] = f"Bearer {d.api_key}"
        url = (d.url or "").rstrip("/") + "/chat/completions"
        body = orjson.dumps(chat_body(request, d.backend_model or target.model_id, stream))
        try:
            return await self.client.post(url, body, headers)
        except HTTPError as e:
            raise ServiceUnavailable(f"The model backend cannot be reached: {type(e).__name__}.") from None

    async def chat(self, target: Target, request: ChatRequest) -> ChatResponse:
        try:
            with within(target.deployment.timeout_seconds):
                r = await self._send(target, request, False)
                try:
                    raw = await r.read()
                finally:
                    await r.close()
        except TimeoutError:
            raise ModelTimeout(TIMEOUT_MESSAGE) from None
        except HTTPError as e:
            raise ServiceUnavailable(f"The model backend cannot be reached: {type(e).__name__}.") from None
        if r.status != 200:
            raise _error(r.status, raw.decode("utf-8", "replace"))
        try:
            return _completion(orjson.loads(raw), request)
        except MALFORMED:
            raise ModelError("The model backend returned a malformed response.", originalStatusCode=200) from None

    async def chat_stream(self, target: Target, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        timeout = target.deployment.timeout_seconds
        try:
            with within(timeout):
                response = await self._send(target, request, True)
        except TimeoutError:
            raise ModelTimeout(TIMEOUT_MESSAGE) from None
        try:
            if response.status != 200:
                with within(timeout):
                    raw = await response.read()
                raise _error(response.status, raw.decode("utf-8", "replace"))
            lines = _lines(response, timeout)
            async for event in _translate_sse(lines, request):
                yield event
            async for _ in lines:
                pass  # the end of the body after [DONE], so that the connection can be reused
        except TimeoutError:
            raise ModelTimeout(TIMEOUT_MESSAGE) from None
        except HTTPError as e:
            raise ModelStreamError(f"The model backend stream failed: {type(e).__name__}.",
                                   originalStatusCode=502, originalMessage=str(e)[:500]) from None
        finally:
            await response.close()

    async def embed(self, target: Target, request: EmbedRequest) -> EmbedResponse:
        raise ValidationError("The openai backend serves chat models; embedding models need the builtin backend.")

    async def close(self) -> None:
        await self.client.aclose()


async def _lines(response: Response, timeout: float) -> AsyncIterator[str]:
    """The answer's lines; waiting more than ``timeout`` seconds for the next one raises TimeoutError.

    Like httpx's read timeout, only time spent waiting for the backend counts (not the time the
    consumer takes between lines). One timer per stream, re-armed when it fires, instead of an
    ``asyncio.timeout`` per line, which was a fifth of a stream's CPU in bench/runtime.
    """
    loop = asyncio.get_running_loop()
    waiting_since: float | None = None
    waiter: asyncio.Task[Any] | None = None
    expired = False

    def watch() -> None:
        nonlocal handle, expired
        now = loop.time()
        if waiting_since is not None and waiter is not None and now - waiting_since >= timeout:
            expired = True
            waiter.cancel()
            return
        handle = loop.call_at((waiting_since if waiting_since is not None else now) + timeout, watch)

    handle = loop.call_at(loop.time() + timeout, watch)
    lines = response.lines()
    current_task = asyncio.current_task
    try:
        while True:
            # The loop passed in: asking for the running loop costs a system call on Python 3.11 (getpid).
            waiter, waiting_since = current_task(loop), loop.time()
            try:
                line = await anext(lines)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if expired and waiter is not None and waiter.uncancel() == 0:
                    raise TimeoutError from None
                raise
            finally:
                waiting_since = None
            if line:  # the blank line that ends each SSE event says nothing the data line did not
                yield line
    finally:
        handle.cancel()
        # ``watch`` holds itself, the timer and the task: unlinked, the stream's objects are freed when it
        # ends, not left in reference cycles for the garbage collector.
        handle = waiter = watch = None  # type: ignore[assignment]


async def _translate_sse(lines: AsyncIterator[str], request: ChatRequest) -> AsyncIterator[StreamEvent]:
    yield MessageStart("assistant")
    index = -1
    kind: str | None = None  # "text" or the OpenAI index of the tool call being streamed
    text_parts: list[str] = []
    reasoning_parts: list[str] = []  # counted as output when the backend reports no usage
    tool_parts: list[list[str]] = []  # each tool call's name and its input's pieces, likewise
    call_ids: list[str] = []
    finish: StopReason | None = None
    usage: dict[str, Any] | None = None
    async for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        try:
            chunk = orjson.loads(data)
            if chunk.__class__ is dict and chunk.get("error") is not None and not chunk.get("choices"):
                raise _stream_failure(chunk["error"], data)
            chunk_usage, choices = _stream_chunk(chunk)
        except MALFORMED:
            raise ModelStreamError("The model backend sent a malformed stream event.", originalStatusCode=200,
                                   originalMessage=data[:500]) from None
        usage = chunk_usage or usage
        for choice in choices:
            delta = choice["delta"]
            reasoning = _reasoning_of(delta)
            if reasoning:
                if kind != "reasoning":
                    if index >= 0:
                        yield BlockStop(index)
                    index, kind = index + 1, "reasoning"
                reasoning_parts.append(reasoning)
                yield ReasoningDelta(index, text=reasoning)
            if delta.get("content"):
                if kind != "text":
                    if index >= 0:
                        yield BlockStop(index)
                    index, kind = index + 1, "text"
                    yield BlockStart(index)
                text_parts.append(delta["content"])
                yield BlockDelta(index, text=delta["content"])
            for call in delta.get("tool_calls") or ():
                fn = call.get("function") or {}
                call_id = call.get("id") or ""
                # A call is its index's; a new id also starts one, for servers that send each call whole
                # with no index (Gemini's OpenAI layer) or every call at index 0.
                position = call.get("index")
                same_call = kind is not None and kind.startswith("tool") and (
                    position is None or kind == f"tool{position}") and not (
                    call_id and call_ids[-1] and call_id != call_ids[-1])
                if same_call:
                    if call_id and not call_ids[-1]:
                        call_ids[-1] = call_id  # the id of the call under way, sent after its first piece
                else:
                    if index >= 0:
                        yield BlockStop(index)
                    index, kind = index + 1, f"tool{position if position is not None else len(call_ids)}"
                    call_ids.append(call_id)
                    tool_parts.append([fn.get("name") or "", ""])
                    yield BlockStart(index, ToolUse(call_id or _tool_use_id(), fn.get("name") or "", {}))
                if fn.get("arguments"):
                    tool_parts[-1].append(fn["arguments"])
                    yield BlockDelta(index, tool_input=fn["arguments"])
            if choice.get("finish_reason"):
                finish = FINISH.get(choice["finish_reason"], "end_turn")
    if finish is None:
        raise ModelStreamError("The model backend ended the stream without finishing.",
                               originalStatusCode=200, originalMessage="no finish_reason")
    if index >= 0:
        yield BlockStop(index)
    if call_ids and finish == "end_turn":  # tool calls ended with "stop" (gpt-4o, Gemini): as the unary answer
        finish = "tool_use"
    calls = (part for name, *pieces in tool_parts for part in (name, "".join(pieces)))
    output = " ".join(("".join(reasoning_parts), "".join(text_parts), *calls))
    yield MessageStop(finish)
    yield Metadata(_usage(usage, request, output))
