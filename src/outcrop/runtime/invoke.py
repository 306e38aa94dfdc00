"""The invocation pipeline of bedrock-runtime: Converse, ConverseStream, InvokeModel (+stream), CountTokens.

Each operation: resolve ``modelId`` → translate the request (Converse or the model family's body) to
the neutral form → the router (``outcrop.routing``) picks a deployment with room, applies chaos, calls
its provider and fails over → translate the neutral response back → one ``InvocationRecord`` (served
Region, usage, outcome). Results carry ``inferenceRegion``, sent as the ``x-outcrop-inference-region`` header.

Streams are primed: the first event is awaited before the operation returns, so a failure before any
output is an ordinary HTTP error; a failure after it becomes an exception frame (the wire layer's job).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, overload

import orjson

from outcrop.auth.authorize import authorize_invocation
from outcrop.config import Config
from outcrop.context import RequestContext
from outcrop.control.catalog import Catalog, FoundationModel
from outcrop.errors import ServiceError, ValidationError
from outcrop.generations import Watch
from outcrop.providers.base import Target
from outcrop.providers.messages import (
    BlockDelta,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    MessageStart,
    Metadata,
    ReasoningDelta,
    StreamEvent,
    Usage,
)
from outcrop.providers.registry import Providers
from outcrop.providers.tokens import count_request, count_text
from outcrop.routing import Router
from outcrop.routing.limits import estimate_chat, estimate_embedding
from outcrop.runtime.chaos import Chaos
from outcrop.runtime.converse import (
    chat_request,
    converse_events,
    converse_output,
    pick_fields,
    refuse_unsupported_features,
    response_field_paths,
    served_as,
    served_headers,
)
from outcrop.runtime.families import CHAT_FAMILIES, EMBEDDING_FAMILIES, ChatFamily, EmbeddingFamily
from outcrop.runtime.families.base import malformed
from outcrop.runtime.resolve import Resolution, Resolver
from outcrop.store.engine import Store
from outcrop.wire.restjson import WireReady, load_json_document
from outcrop.workers import SharedLimits

log = logging.getLogger("outcrop.runtime")
T = TypeVar("T")
JSON = "application/json"
UNSUPPORTED_ACTION = (
    "This action doesn't support the model that you provided. Try again with a supported text or chat model."
)


@dataclass(slots=True)
class InvocationRecord:
    """One per invocation: what metering will read (it never parses a body)."""

    request_id: str
    account: str
    source_region: str
    operation: str
    model_id: str
    profile_arn: str | None
    served_region: str | None = None
    attempts: int = 0  # deployments called, failovers included
    usage: Usage | None = None
    outcome: str = "success"  # or the AWS error code
    latency_ms: int = 0
    started: float = field(default_factory=time.monotonic)
    # For metering: the modelId as called, the caller, time to first token of a stream, the HTTP status
    # of a failure, the profile's tags at admission (set by the sink), and Converse's requestMetadata.
    requested_model_id: str = ""
    principal: str = ""
    first_token_ms: int | None = None
    error_status: int | None = None
    tags: dict[str, str] | None = None
    metadata: dict[str, str] | None = None  # Converse's requestMetadata


class RecordSink(Protocol):
    """Where records go (``outcrop.metering.Meter``): admission before the call, the record after it.

    ``emit`` returns once the record is durable; the runtime awaits it before the answer completes.
    """

    async def admit(self, record: InvocationRecord) -> None: ...

    async def emit(self, record: InvocationRecord) -> None: ...


class LogSink:
    """Records to the log only (no metering)."""

    async def admit(self, record: InvocationRecord) -> None:
        return None

    async def emit(self, record: InvocationRecord) -> None:
        log_record(record)


def log_record(record: InvocationRecord) -> None:
    # Debug, not info: with metering off an invocation should cost nothing here (formatting and writing a
    # log line per invocation was ~30 us of CPU, a fifth of a builtin Converse).
    if not log.isEnabledFor(logging.DEBUG):
        return
    log.debug(
        "invocation %s %s model=%s profile=%s served=%s outcome=%s usage=%s latency_ms=%d",
        record.request_id, record.operation, record.model_id, record.profile_arn, record.served_region,
        record.outcome, record.usage, record.latency_ms,
    )


class Runtime:
    def __init__(
        self, catalog: Catalog, store: Store, config: Config, chaos: Chaos | None = None,
        sink: RecordSink | None = None, deletions: Watch | None = None, limits: SharedLimits | None = None,
    ) -> None:
        self.resolver = Resolver(catalog, store, deletions=deletions)
        self.providers = Providers()
        self.chaos = chaos or Chaos()
        self.router = Router(config, self.providers, self.chaos, limits=limits)
        self.sink: RecordSink = sink or LogSink()

    def handlers(self) -> dict[tuple[str, str], Callable[[RequestContext, dict[str, Any]], Awaitable[dict[str, Any]]]]:
        return {
            ("bedrock-runtime", "Converse"): self.converse,
            ("bedrock-runtime", "ConverseStream"): self.converse_stream,
            ("bedrock-runtime", "InvokeModel"): self.invoke_model,
            ("bedrock-runtime", "InvokeModelWithResponseStream"): self.invoke_model_stream,
            ("bedrock-runtime", "CountTokens"): self.count_tokens,
        }

    async def close(self) -> None:
        await self.providers.close()

    # -- operations ------------------------------------------------------------------------------------
    async def converse(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        resolution = await self.resolver.resolve(ctx, params["modelId"])
        request = _converse_request(params, resolution.model, ctx, stream=False)
        paths = response_field_paths(params)
        record = self._record(ctx, "Converse", resolution, params["modelId"])
        record.metadata = request.metadata
        async with self._recording(record):
            response = await self.router.run(
                ctx.region, resolution, record, self._authorized(ctx, record, lambda p, t: p.chat(t, request)),
                lambda: estimate_chat(request),
            )
            record.usage = response.usage
        out = WireReady(converse_output(response, record.latency_ms), **served_as(params),
                        inferenceRegion=record.served_region)
        native = self._native(resolution.model, request, ctx.request_id) if paths else None
        fields = pick_fields(native(response), paths) if native is not None else None
        if fields is not None:
            out["additionalModelResponseFields"] = fields
        return out

    async def converse_stream(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        resolution = await self.resolver.resolve(ctx, params["modelId"])
        request = _converse_request(params, resolution.model, ctx, stream=True)
        paths = response_field_paths(params)
        record = self._record(ctx, "ConverseStream", resolution, params["modelId"])
        record.metadata = request.metadata
        events = await self._open_stream(ctx, resolution, record, request)
        native = self._native(resolution.model, request, ctx.request_id) if paths else None
        stream = converse_events(events, record.started, served_as(params), native, paths)
        return {"stream": stream, "inferenceRegion": record.served_region}

    async def invoke_model(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        resolution = await self.resolver.resolve(ctx, params["modelId"])
        body = _json_body(params.get("body"))
        record = self._record(ctx, "InvokeModel", resolution, params["modelId"])
        model = resolution.model
        embedding = EMBEDDING_FAMILIES.get(model.family)
        if embedding is not None:
            embed_request = _parsed(embedding, body, model.model_id)
            async with self._recording(record):
                embedded = await self.router.run(
                    ctx.region, resolution, record, self._authorized(ctx, record, lambda p, t: p.embed(t, embed_request)),
                    lambda: estimate_embedding(embed_request),
                )
                record.usage = embedded.usage
            out = embedding.render(embedded, embed_request, ctx.request_id)
        else:
            family = _chat_family(model)
            request = _parsed(family, body, model.model_id)
            request.cache_scope = ctx.account
            async with self._recording(record):
                response = await self.router.run(
                    ctx.region, resolution, record, self._authorized(ctx, record, lambda p, t: p.chat(t, request)),
                    lambda: estimate_chat(request),
                )
                record.usage = response.usage
            out = family.render(response, request, model.model_id, ctx.request_id)
        usage = record.usage or Usage(0, 0)
        return {
            "body": orjson.dumps(out),
            "contentType": JSON,
            "invocationLatency": str(record.latency_ms),
            "inputTokenCount": str(usage.input_tokens),
            "outputTokenCount": str(usage.output_tokens),
            "inferenceRegion": record.served_region,
            **served_headers(params),
        }

    async def invoke_model_stream(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        resolution = await self.resolver.resolve(ctx, params["modelId"])
        body = _json_body(params.get("body"))
        model = resolution.model
        if model.family in EMBEDDING_FAMILIES or not model.streaming:
            raise ValidationError("The model is unsupported for streaming.")
        family = _chat_family(model)
        request = _parsed(family, body, model.model_id)
        request.cache_scope = ctx.account
        record = self._record(ctx, "InvokeModelWithResponseStream", resolution, params["modelId"])
        events = await self._open_stream(ctx, resolution, record, request)
        chunks = family.stream(events, request, model.model_id, ctx.request_id)
        return {"body": _payload_parts(chunks, record), "contentType": JSON, "inferenceRegion": record.served_region,
                **served_headers(params)}

    async def count_tokens(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        resolution = await self.resolver.resolve(ctx, params["modelId"], invocation=False)
        model = resolution.model
        source = params.get("input") or {}
        if "converse" in source:
            _require_chat(model)
            return {"inputTokens": count_request(chat_request(source["converse"], model.model_id))}
        body = _json_body((source.get("invokeModel") or {}).get("body"))
        embedding = EMBEDDING_FAMILIES.get(model.family)
        if embedding is not None:
            return {"inputTokens": sum(count_text(t) for t in _parsed(embedding, body, model.model_id).texts)}
        return {"inputTokens": count_request(_parsed(_chat_family(model), body, model.model_id))}

    # -- plumbing --------------------------------------------------------------------------------------
    @staticmethod
    def _native(model: FoundationModel, request: ChatRequest, request_id: str) -> Callable[[ChatResponse], Any] | None:
        """The model's own (InvokeModel) response for a neutral one, where outcrop speaks its family; it is
        what ``additionalModelResponseFieldPaths`` point into."""
        family = CHAT_FAMILIES.get(model.family)
        if family is None:
            return None
        return lambda response: family.render(response, request, model.model_id, request_id)

    def _record(self, ctx: RequestContext, operation: str, resolution: Resolution, model_id: str) -> InvocationRecord:
        return InvocationRecord(
            ctx.request_id, ctx.account, ctx.region, operation, resolution.model.model_id, resolution.profile_arn,
            requested_model_id=model_id, principal=ctx.principal_arn,
        )

    @staticmethod
    def _authorized(
        ctx: RequestContext, record: InvocationRecord, call: Callable[[Any, Target], Awaitable[T]]
    ) -> Callable[[Any, Target], Awaitable[T]]:
        """``call``, after checking that the caller may invoke the model in the Region about to serve it
        (as at AWS, a profile needs permission on the foundation model in every Region it routes to)."""

        async def run(provider: Any, target: Target) -> T:
            authorize_invocation(ctx, record.operation, target.region, target.model_id, record.profile_arn)
            return await call(provider, target)

        return run

    def _recording(self, record: InvocationRecord) -> _Recording:
        return _Recording(record, self.sink)

    async def _open_stream(
        self, ctx: RequestContext, resolution: Resolution, record: InvocationRecord, request: ChatRequest
    ) -> AsyncIterator[StreamEvent]:
        async def start(provider: Any, target: Target) -> AsyncIterator[StreamEvent]:
            return await _primed(provider.chat_stream(target, request))

        async with _Recording(record, self.sink, on_success=False):
            events = await self.router.open_stream(
                ctx.region, resolution, record, self._authorized(ctx, record, start), lambda: estimate_chat(request)
            )
        return _observed(events, record, self.sink)


class _Recording:
    """Admits an invocation (budgets), times it and emits its record, durably, before the answer goes out.

    An AWS error, admission's included, becomes the record's outcome.
    """

    def __init__(self, record: InvocationRecord, sink: RecordSink, on_success: bool = True) -> None:
        self.record, self.sink, self.on_success = record, sink, on_success

    async def __aenter__(self) -> _Recording:
        try:
            await self.sink.admit(self.record)
        except ServiceError as e:
            await self.__aexit__(type(e), e, None)
            raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        self.record.latency_ms = int((time.monotonic() - self.record.started) * 1000)
        if error is not None:
            if isinstance(error, ServiceError):
                self.record.outcome, self.record.error_status = error.code, error.status
            else:
                self.record.outcome, self.record.error_status = "InternalServerException", 500
            await self.sink.emit(self.record)
        elif self.on_success:
            await self.sink.emit(self.record)


async def _primed(stream: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
    """The same stream, with its first event already awaited (so early failures raise here)."""
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        return _empty()

    async def rest() -> AsyncIterator[StreamEvent]:
        try:
            yield first
            async for event in stream:
                yield event
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()

    return rest()


async def _empty() -> AsyncIterator[StreamEvent]:
    return
    yield


async def _observed(events: AsyncIterator[StreamEvent], record: InvocationRecord, sink: RecordSink) -> AsyncIterator[StreamEvent]:
    """The stream, recording usage and time to first token. Its record is emitted (durably) when the stream
    ends, before the answer's last byte, and also when the client abandons it (usage counted up to there)."""
    input_tokens = 0
    deltas: list[str] = []  # counted only if the stream ends without the backend's own usage
    try:
        async for event in events:
            if isinstance(event, BlockDelta | ReasoningDelta):
                if record.first_token_ms is None:
                    record.first_token_ms = int((time.monotonic() - record.started) * 1000)
                deltas.append((event.text if isinstance(event, ReasoningDelta) else event.text or event.tool_input) or "")
            elif isinstance(event, Metadata):
                record.usage = event.usage
            elif isinstance(event, MessageStart):
                input_tokens = event.input_tokens or 0
            yield event
    except ServiceError as e:
        record.outcome, record.error_status = e.code, e.status
        raise
    finally:
        if record.usage is None:
            record.usage = Usage(input_tokens, sum(count_text(d) for d in deltas))
            if record.outcome == "success":
                record.outcome = "ClientDisconnected"
        record.latency_ms = int((time.monotonic() - record.started) * 1000)
        await sink.emit(record)


async def _payload_parts(chunks: AsyncIterator[dict[str, Any]], record: InvocationRecord) -> AsyncIterator[dict[str, Any]]:
    """``chunk`` events; the last one carries ``amazon-bedrock-invocationMetrics``, as at Bedrock."""
    previous: dict[str, Any] | None = None
    first_byte: int | None = None
    async for chunk in chunks:
        if previous is not None:
            yield {"chunk": {"bytes": orjson.dumps(previous)}}
        if first_byte is None:
            first_byte = int((time.monotonic() - record.started) * 1000)
        previous = chunk
    if previous is not None:
        usage = record.usage or Usage(0, 0)
        metrics = previous["amazon-bedrock-invocationMetrics"] = {
            "inputTokenCount": usage.input_tokens,
            "outputTokenCount": usage.output_tokens,
            "invocationLatency": int((time.monotonic() - record.started) * 1000),
            "firstByteLatency": first_byte or 0,
        }
        if usage.cache_read_tokens or usage.cache_write_tokens:  # the prompt cache's part, as at Bedrock
            metrics["cacheReadInputTokenCount"] = usage.cache_read_tokens
            metrics["cacheWriteInputTokenCount"] = usage.cache_write_tokens
        yield {"chunk": {"bytes": orjson.dumps(previous)}}


def _json_body(body: bytes | None) -> dict[str, Any]:
    if not body:
        raise malformed("#: expected type: JSONObject, found: Null")
    try:
        value = load_json_document(body)
    except orjson.JSONDecodeError as e:
        raise malformed(f"#: the body is not valid JSON ({e.msg} at position {e.pos})") from None
    except ValueError as e:
        raise malformed(f"#: the body {e}") from None
    if not isinstance(value, dict):
        raise malformed(f"#: expected type: JSONObject, found: {type(value).__name__}")
    return value


@overload
def _parsed(family: ChatFamily, body: Mapping[str, Any], model_id: str) -> ChatRequest: ...
@overload
def _parsed(family: EmbeddingFamily, body: Mapping[str, Any], model_id: str) -> EmbedRequest: ...
def _parsed(family: ChatFamily | EmbeddingFamily, body: Mapping[str, Any], model_id: str) -> ChatRequest | EmbedRequest:
    """A family's reading of an InvokeModel body, checked first against the family's schema (the type of
    every member it reads, at every depth), so a violation is refused with its path. A parser's own slip
    on something the schema let through is still a body the model refuses, never an internal error."""
    family.schema.check(body)
    try:
        return family.parse(body, model_id)
    except (TypeError, AttributeError, KeyError, IndexError, ValueError) as e:
        log.warning("InvokeModel body passed the %s schema but not its parser: %r", family.name, e)
        raise malformed(f"#: a value in the body is not of the type {model_id}'s request schema gives it") from None


def _converse_request(params: dict[str, Any], model: FoundationModel, ctx: RequestContext, stream: bool) -> ChatRequest:
    """Converse's request for ``model``, refused first where Bedrock refuses it for that model."""
    _require_chat(model)
    refuse_unsupported_features(params, model.model_id, model.input_modalities, stream=stream)
    limit = model.max_output_tokens
    requested = (params.get("inferenceConfig") or {}).get("maxTokens")
    if limit is not None and requested is not None and requested > limit:
        raise ValidationError(f"The maximum tokens you requested exceeds the model limit of {limit}. Try again with a "
                              f"maximum tokens value that is lower than {limit}.")
    request = chat_request(params, model.model_id)
    request.cache_scope = ctx.account
    return request


def _is_chat(model: FoundationModel) -> bool:
    return model.family not in EMBEDDING_FAMILIES and "TEXT" in model.output_modalities


def _require_chat(model: FoundationModel) -> None:
    if not _is_chat(model):
        raise ValidationError(UNSUPPORTED_ACTION)


def _chat_family(model: FoundationModel) -> ChatFamily:
    family = CHAT_FAMILIES.get(model.family)
    if family is None:
        if _is_chat(model):
            raise ValidationError(
                f"outcrop does not implement the InvokeModel body of {model.model_id} (family {model.family}); "
                "use Converse for this model.")
        made = " and ".join(m.lower() for m in model.output_modalities) or "other output"
        raise ValidationError(f"outcrop does not serve {model.model_id}: it makes {made}, and outcrop serves text "
                              "and embedding models.")
    return family


__all__ = ["EmbeddingFamily", "InvocationRecord", "LogSink", "RecordSink", "Runtime"]
