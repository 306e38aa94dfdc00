"""Upstream Amazon Bedrock (or any Bedrock-compatible endpoint, another outcrop included), re-signed.

Chat requests, whichever operation the caller used (Converse, ConverseStream, InvokeModel in any
family's body, InvokeModelWithResponseStream), go upstream as Converse or ConverseStream: Converse is
the one chat API every Bedrock model answers, and it is the neutral form's own vocabulary, so nothing
is lost between the family translator and the upstream model. Embeddings have no model-neutral API at
Bedrock: they go upstream as InvokeModel in the body of the model's own family (Titan or Cohere).

Each call is signed afresh for the upstream: SigV4 (service ``bedrock``, the deployment's
``upstream_region`` or else the serving Region) with the deployment's ``aws_*`` credentials, or a
Bedrock API key as ``Authorization: Bearer``. The caller's own credentials never leave outcrop.

Upstream failures become the same AWS errors for the caller (ThrottlingException stays
ThrottlingException, with its status); a timeout is ModelTimeoutException, a connection failure
ServiceUnavailableException, a stream cut short ModelStreamErrorException. Streams are decoded with
botocore's ``EventStreamBuffer`` and re-emitted as neutral stream events.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer, EventStreamMessage

from outcrop.config import Deployment
from outcrop.errors import (
    AccessDenied,
    InternalServer,
    ModelError,
    ModelNotReady,
    ModelStreamError,
    ModelTimeout,
    NotFound,
    ServiceError,
    ServiceQuotaExceeded,
    ServiceUnavailable,
    Throttled,
    ValidationError,
)
from outcrop.providers.base import MALFORMED, Target
from outcrop.providers.messages import (
    Block,
    BlockDelta,
    BlockStart,
    BlockStop,
    CachePoint,
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
    ToolUse,
    Usage,
    cache_writes_by_ttl,
)
from outcrop.providers.tokens import count_text

SIGNING_SERVICE = "bedrock"
TIMEOUT_MESSAGE = "Model has timed out in processing the request. Try your request again."
# Upstream error codes that mean the same to the caller; anything else is judged by its HTTP status.
UPSTREAM_ERRORS: dict[str, type[ServiceError]] = {
    e.code: e
    for e in (Throttled, ServiceUnavailable, ModelError, ModelTimeout, ModelNotReady, ModelStreamError,
              ValidationError, AccessDenied, NotFound, ServiceQuotaExceeded, InternalServer)
}
# The upstream refused outcrop's own credentials: the caller can do nothing about it but ask the operator.
UPSTREAM_AUTH_ERRORS = ("UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignatureException",
                        "MissingAuthenticationTokenException", "ExpiredTokenException")
STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end_turn", "tool_use": "tool_use", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence",
    "content_filtered": "content_filtered", "guardrail_intervened": "content_filtered",
    "model_context_window_exceeded": "max_tokens",
}


# -- the upstream call: URL, signature, errors ----------------------------------------------------------
def endpoint(deployment: Deployment, region: str) -> str:
    """The upstream bedrock-runtime endpoint: the deployment's ``url``, else AWS's for the Region."""
    return (deployment.url or f"https://bedrock-runtime.{region}.amazonaws.com").rstrip("/")


def upstream_region(deployment: Deployment, target: Target) -> str:
    return deployment.upstream_region or target.region


def operation_url(base: str, model_id: str, action: str) -> str:
    """``{base}/model/{modelId}/{action}``, the model ID encoded as one path segment as the AWS SDKs do."""
    return f"{base}/model/{quote(model_id, safe='-_.~')}/{action}"


def signed_headers(deployment: Deployment, region: str, url: str, body: bytes,
                   headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` plus the upstream's ``Authorization``: SigV4 with the deployment's keys, or its API key."""
    if deployment.api_key:
        return {**headers, "Authorization": f"Bearer {deployment.api_key}"}
    credentials = Credentials(deployment.aws_access_key_id or "", deployment.aws_secret_access_key or "",
                              deployment.aws_session_token)
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    SigV4Auth(credentials, SIGNING_SERVICE, region).add_auth(request)
    return dict(request.headers.items())


def upstream_error(status: int, headers: Mapping[str, str], body: bytes) -> ServiceError:
    """The caller's AWS error for an upstream error response."""
    try:
        payload = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    raw_code = headers.get("x-amzn-errortype") or str(payload.get("__type") or payload.get("code") or "")
    code = raw_code.split(":", 1)[0].rsplit("#", 1)[-1]
    message = str(payload.get("message") or payload.get("Message") or body[:500].decode("utf-8", "replace")
                  or f"HTTP {status}")
    return _error(code, status, message, payload)


def _error(code: str, status: int, message: str, payload: Mapping[str, Any]) -> ServiceError:
    kind = UPSTREAM_ERRORS.get(code)
    if kind is None and (code in UPSTREAM_AUTH_ERRORS or status in (401, 403)):
        return AccessDenied(f"The upstream Bedrock endpoint refused outcrop's credentials ({code or status}): "
                            f"{message}")
    if kind is None:
        kind = {429: Throttled, 408: ModelTimeout, 424: ModelError, 404: NotFound}.get(status)
    if kind is None:
        kind = ServiceUnavailable if status >= 500 else ValidationError
    # Modelled fields (``originalStatusCode``, ``resourceName`` …) travel with the error.
    fields = {k: v for k, v in payload.items() if k not in ("message", "Message", "__type", "code")}
    return kind(message, **fields)


# -- neutral form → Converse -----------------------------------------------------------------------------
def _block(block: Block) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"text": block.text}
    if isinstance(block, Image):
        return {"image": {"format": block.format, "source": {"bytes": base64.b64encode(block.data).decode()}}}
    if isinstance(block, ToolUse):
        return {"toolUse": {"toolUseId": block.id, "name": block.name, "input": block.input}}
    if isinstance(block, Reasoning):
        text: dict[str, Any] = {"text": block.text}
        if block.signature:
            text["signature"] = block.signature
        return {"reasoningContent": {"reasoningText": text}}
    content = [{"text": c} if isinstance(c, str) else _block(c) if isinstance(c, Image) else {"json": c}
               for c in block.content]
    result: dict[str, Any] = {"toolUseId": block.tool_use_id, "content": content}
    if block.status:
        result["status"] = block.status
    return {"toolResult": result}


def converse_body(request: ChatRequest) -> dict[str, Any]:
    """The Converse request body of a neutral request."""
    points = request.cache_points
    body: dict[str, Any] = {
        "messages": [
            {"role": m.role, "content": _pointed([_block(b) for b in m.content],
                                                 [p for p in points if p.where == "messages" and p.count == i], True)}
            for i, m in enumerate(request.messages)
        ],
    }
    if request.system:
        body["system"] = _pointed([{"text": s} for s in request.system], [p for p in points if p.where == "system"])
    config = {key: value for key, value in (("maxTokens", request.max_tokens), ("temperature", request.temperature),
                                            ("topP", request.top_p)) if value is not None}
    if request.stop_sequences:
        config["stopSequences"] = list(request.stop_sequences)
    if config:
        body["inferenceConfig"] = config
    if request.tools:
        specs = [{"name": t.name, "inputSchema": {"json": t.input_schema}} | (
            {"description": t.description} if t.description else {}) for t in request.tools]
        tool_config: dict[str, Any] = {
            "tools": _pointed([{"toolSpec": spec} for spec in specs], [p for p in points if p.where == "tools"])}
        choice = request.tool_choice
        if choice is not None and choice.mode != "none":  # Converse has no "none": offering tools is "auto"
            tool_config["toolChoice"] = {"tool": {"name": choice.name}} if choice.mode == "tool" else {choice.mode: {}}
        body["toolConfig"] = tool_config
    if request.output_schema is not None:
        definition: dict[str, Any] = {"schema": orjson.dumps(request.output_schema.schema).decode()}
        for key in ("name", "description"):
            value = getattr(request.output_schema, key)
            if value:
                definition[key] = value
        body["outputConfig"] = {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": definition}}}
    extra = dict(request.extra)
    if request.reasoning_budget is not None and "thinking" not in extra:  # asked in Claude's own body
        extra["thinking"] = {"type": "enabled", "budget_tokens": request.reasoning_budget}
    if request.reasoning_effort is not None and "reasoningConfig" not in extra:  # asked in Nova's own body
        extra["reasoningConfig"] = {"type": "enabled", "maxReasoningEffort": request.reasoning_effort}
    if request.top_k is not None and "top_k" not in extra and "topK" not in extra:
        extra["top_k"] = request.top_k
    if extra:
        body["additionalModelRequestFields"] = extra
    if request.metadata:  # upstream's invocation logs carry it, and its users filter them by it
        body["requestMetadata"] = dict(request.metadata)
    return body


def _pointed(items: list[dict[str, Any]], points: list[CachePoint], in_message: bool = False) -> list[dict[str, Any]]:
    """``items`` with a ``cachePoint`` block where each of ``points`` sits (after its first count, or for a
    message, block, items)."""
    out = list(items)
    for p in sorted(points, key=lambda p: p.block if in_message else p.count, reverse=True):
        point: dict[str, Any] = {"type": "default"}
        if p.ttl != "5m":
            point["ttl"] = p.ttl
        out.insert(p.block if in_message else p.count, {"cachePoint": point})
    return out


# -- Converse → neutral form -----------------------------------------------------------------------------
def usage_of(raw: Mapping[str, Any] | None) -> Usage:
    raw = raw or {}
    writes = {d.get("ttl"): int(d.get("inputTokens") or 0) for d in raw.get("cacheDetails") or () if isinstance(d, dict)}
    return Usage(int(raw.get("inputTokens") or 0), int(raw.get("outputTokens") or 0),
                 int(raw.get("cacheReadInputTokens") or 0), int(raw.get("cacheWriteInputTokens") or 0),
                 cache_writes_by_ttl(writes))


def chat_response(payload: Mapping[str, Any]) -> ChatResponse:
    content: list[Block] = []
    for raw in ((payload.get("output") or {}).get("message") or {}).get("content") or ():
        if "text" in raw:
            content.append(Text(raw["text"]))
        elif "toolUse" in raw:
            t = raw["toolUse"]
            content.append(ToolUse(t.get("toolUseId", ""), t.get("name", ""), t.get("input") or {}))
        elif "reasoningContent" in raw and (raw["reasoningContent"].get("reasoningText") or {}).get("text") is not None:
            r = raw["reasoningContent"]["reasoningText"]
            content.append(Reasoning(r["text"], r.get("signature")))
    stop = STOP_REASONS.get(payload.get("stopReason") or "end_turn", "end_turn")
    return ChatResponse(tuple(content), stop, usage_of(payload.get("usage")))


class StreamTranslator:
    """ConverseStream events → neutral stream events (text blocks get the ``BlockStart`` Bedrock omits)."""

    def __init__(self) -> None:
        self.open: set[int] = set()

    def events(self, name: str, value: Mapping[str, Any]) -> list[StreamEvent]:
        index = int(value.get("contentBlockIndex") or 0)
        if name == "messageStart":
            return [MessageStart(value.get("role") or "assistant")]
        if name == "contentBlockStart":
            tool = (value.get("start") or {}).get("toolUse")
            self.open.add(index)
            return [BlockStart(index, ToolUse(tool["toolUseId"], tool["name"], {}) if tool else None)]
        if name == "contentBlockDelta":
            delta = value.get("delta") or {}
            reasoning = delta.get("reasoningContent")
            if reasoning is not None:  # a reasoning block has no BlockStart (see ReasoningDelta)
                self.open.add(index)
                if "text" in reasoning:
                    return [ReasoningDelta(index, text=reasoning["text"])]
                return [ReasoningDelta(index, signature=reasoning["signature"])] if "signature" in reasoning else []
            out: list[StreamEvent] = []
            if index not in self.open:
                self.open.add(index)
                out.append(BlockStart(index))
            if "text" in delta:
                out.append(BlockDelta(index, text=delta["text"]))
            elif "toolUse" in delta:
                out.append(BlockDelta(index, tool_input=delta["toolUse"].get("input") or ""))
            return out  # citation deltas: nothing the neutral form carries
        if name == "contentBlockStop":
            return [BlockStop(index)] if index in self.open else []
        if name == "messageStop":
            return [MessageStop(STOP_REASONS.get(value.get("stopReason") or "end_turn", "end_turn"))]
        if name == "metadata":
            return [Metadata(usage_of(value.get("usage")))]
        return []


def _message_error(message: EventStreamMessage) -> ServiceError:
    headers = message.headers
    name = str(headers.get(":exception-type") or headers.get(":error-code") or "")
    code = name[:1].upper() + name[1:]
    try:
        payload = orjson.loads(message.payload) if message.payload else {}
    except orjson.JSONDecodeError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    text = str(payload.get("message") or headers.get(":error-message") or f"upstream stream error {name}")
    if code not in UPSTREAM_ERRORS:
        return ModelStreamError(f"The upstream Bedrock stream failed ({name}): {text}", originalStatusCode=200,
                                originalMessage=text[:500])
    return _error(code, 200, text, payload)


# -- embeddings: the family's own InvokeModel body ------------------------------------------------------
def embed_bodies(model_id: str, request: EmbedRequest) -> list[dict[str, Any]]:
    """One InvokeModel body per upstream call: Titan takes one text each, Cohere all at once."""
    if "cohere.embed" in model_id:
        body: dict[str, Any] = {"texts": list(request.texts), "input_type": request.input_type or "search_document",
                                "embedding_types": ["float"]}
        if "embed-v4" in model_id:
            body["output_dimension"] = request.dimensions
        return [body]
    if "titan-embed-text-v1" in model_id:
        return [{"inputText": t} for t in request.texts]
    return [{"inputText": t, "dimensions": request.dimensions, "normalize": request.normalize} for t in request.texts]


def embed_vectors(payload: Mapping[str, Any]) -> list[tuple[float, ...]]:
    if "embedding" in payload:
        return [tuple(payload["embedding"])]
    embeddings = payload.get("embeddings")
    if isinstance(embeddings, dict):  # Cohere with embedding_types
        embeddings = embeddings.get("float")
    if not isinstance(embeddings, list):
        raise ModelError("The upstream model returned no embeddings.", originalStatusCode=200)
    return [tuple(v) for v in embeddings]


def _unlink(response: httpx.Response) -> None:
    """Once a response is read or closed: httpx's response and its stream hold each other, so without this
    every upstream call's objects (~50) waited for the garbage collector (tests/unit/test_no_garbage_cycles.py)."""
    response.stream = _READ


_READ = httpx.ByteStream(b"")


class BedrockProvider:
    def __init__(self) -> None:
        self.client = httpx.AsyncClient()

    def _request(self, target: Target, action: str, body: bytes, accept: str) -> httpx.Request:
        d = target.deployment
        region = upstream_region(d, target)
        url = operation_url(endpoint(d, region), d.backend_model or target.model_id, action)
        headers = signed_headers(d, region, url, body, {"Content-Type": "application/json", "Accept": accept})
        return self.client.build_request("POST", url, content=body, headers=headers, timeout=d.timeout_seconds)

    async def _send(self, request: httpx.Request, stream: bool = False) -> httpx.Response:
        try:
            response = await self.client.send(request, stream=stream)
        except httpx.TimeoutException:
            raise ModelTimeout(TIMEOUT_MESSAGE) from None
        except httpx.TransportError as e:
            raise ServiceUnavailable(f"The upstream Bedrock endpoint cannot be reached: {type(e).__name__}.") from None
        if response.status_code != 200:
            try:
                body = await response.aread()
            except httpx.HTTPError:
                body = b""
            finally:
                await response.aclose()
                _unlink(response)
            raise upstream_error(response.status_code, response.headers, body)
        return response

    async def _invoke(self, target: Target, action: str, body: dict[str, Any]) -> httpx.Response:
        response = await self._send(self._request(target, action, orjson.dumps(body), "application/json"))
        try:
            await response.aread()
        except httpx.TimeoutException:
            raise ModelTimeout(TIMEOUT_MESSAGE) from None
        except httpx.TransportError as e:
            raise ServiceUnavailable(f"The upstream Bedrock response failed: {type(e).__name__}.") from None
        finally:
            _unlink(response)
        return response

    async def chat(self, target: Target, request: ChatRequest) -> ChatResponse:
        response = await self._invoke(target, "converse", converse_body(request))
        try:
            return chat_response(orjson.loads(response.content))
        except MALFORMED:  # not JSON, or a member of the wrong type
            raise ModelError("The upstream Bedrock endpoint returned a malformed response.",
                             originalStatusCode=200) from None

    async def chat_stream(self, target: Target, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        body = orjson.dumps(converse_body(request))
        response = await self._send(
            self._request(target, "converse-stream", body, "application/vnd.amazon.eventstream"), stream=True)
        translator = StreamTranslator()
        finished = False
        try:
            decoder = EventStreamBuffer()
            async for data in response.aiter_bytes():
                decoder.add_data(data)
                for message in decoder:
                    kind = message.headers.get(":message-type")
                    if kind != "event":
                        raise _message_error(message)
                    name = str(message.headers.get(":event-type"))
                    try:
                        events = translator.events(name, orjson.loads(message.payload or b"{}"))
                    except MALFORMED:
                        raise ModelStreamError("The upstream Bedrock stream sent a malformed event.", originalStatusCode=200,
                                               originalMessage=bytes(message.payload[:500]).decode("utf-8", "replace")) from None
                    for event in events:
                        finished = finished or isinstance(event, Metadata)
                        yield event
        except httpx.TimeoutException:
            raise ModelTimeout(TIMEOUT_MESSAGE) from None
        except httpx.TransportError as e:
            raise ModelStreamError(f"The upstream Bedrock stream failed: {type(e).__name__}.",
                                   originalStatusCode=502, originalMessage=str(e)[:500]) from None
        finally:
            await response.aclose()
            _unlink(response)
        if not finished:
            raise ModelStreamError("The upstream Bedrock stream ended before its metadata event.",
                                   originalStatusCode=200, originalMessage="stream ended early")

    async def embed(self, target: Target, request: EmbedRequest) -> EmbedResponse:
        model_id = target.deployment.backend_model or target.model_id
        vectors: list[tuple[float, ...]] = []
        input_tokens = 0
        for body in embed_bodies(model_id, request):
            response = await self._invoke(target, "invoke", body)
            try:
                payload = orjson.loads(response.content)
                vectors += embed_vectors(payload)
                counted = response.headers.get("x-amzn-bedrock-input-token-count") or payload.get("inputTextTokenCount")
                texts = body.get("texts") or [body.get("inputText", "")]
                input_tokens += int(counted) if counted is not None else sum(count_text(t) for t in texts)
            except MALFORMED:
                raise ModelError("The upstream model returned a malformed response.", originalStatusCode=200) from None
        return EmbedResponse(tuple(vectors), Usage(input_tokens, 0))

    async def close(self) -> None:
        await self.client.aclose()
