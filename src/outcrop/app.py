"""The ASGI application: one port serving ``bedrock`` and ``bedrock-runtime``, plus ``/_outcrop/``.

A request flows through a short list of steps::

    match route (raw path) → read body → identify caller (account, Region) → parse + validate input
    → call the operation → serialize output, or the AWS error of the domain error raised

Operations are plain async callables ``(RequestContext, params) -> dict`` bound to their operation
names in ``_bind``; they never see HTTP.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError

from outcrop import logs
from outcrop.auth.authenticate import MISSING_AUTHORIZATION, Authenticator, AuthMode, Caller
from outcrop.auth.authorize import Authorizer, admin_check
from outcrop.auth.identities import Identities
from outcrop.batching import Batches, aclose
from outcrop.config import Config, load_config
from outcrop.context import RequestContext
from outcrop.control.catalog import Catalog
from outcrop.control.foundation_models import FoundationModels
from outcrop.control.pagination import PageTokens, load_token_key
from outcrop.control.profiles import InferenceProfiles
from outcrop.control.tags import Tags
from outcrop.deadlines import within
from outcrop.errors import (
    AccessDenied,
    InternalServer,
    NotImplementedOperation,
    RequestTimeout,
    RequestTooLarge,
    ServiceError,
    UnknownOperation,
)
from outcrop.generations import PROFILES, TAGS, Generations, Watch
from outcrop.ids import request_id as new_request_id
from outcrop.metering import Meter, Prices
from outcrop.metering.endpoint import usage_endpoint
from outcrop.observability import Metrics
from outcrop.routing.metrics import RoutingCollector
from outcrop.runtime import Chaos, Runtime
from outcrop.runtime.admin import chaos_endpoint
from outcrop.store.engine import Store
from outcrop.wire.eventstream import stream_output
from outcrop.wire.model import Operation, ServiceCatalog
from outcrop.wire.restjson import error_response, parse_request, serialize_output
from outcrop.wire.sigv4 import RawRequest, query_param
from outcrop.workers import SERVER_ENV, SharedLimits, Slot, Snapshots, merge_routing

log = logging.getLogger("outcrop")

Handler = Callable[[RequestContext, dict[str, Any]], Awaitable[dict[str, Any]]]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
HOUSEKEEPING_INTERVAL_S = 3600
_BODILESS = frozenset({"GET", "HEAD", "DELETE"})

_SERVICES: ServiceCatalog | None = None


def service_catalog() -> ServiceCatalog:
    """The parsed service models, shared by every app in the process (they are read-only)."""
    global _SERVICES
    if _SERVICES is None:
        _SERVICES = ServiceCatalog()
    return _SERVICES


class Outcrop:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.services = service_catalog()
        self.catalog = Catalog.load(config.catalog.models, config.catalog.profiles)
        self.store: Store | None = None
        self.handlers: dict[tuple[str, str], Handler] = {}
        self.chaos = Chaos()
        self.metrics = Metrics()
        self.runtime: Runtime | None = None
        self.meter: Meter | None = None
        self.strict = config.auth_mode == AuthMode.STRICT
        self.authenticator: Authenticator | None = None
        self.authorizer: Authorizer | None = None
        self.generations: Generations | None = None
        # With several workers (``outcrop serve --workers N``): this worker's place among them, the limits
        # they share, and the state a scrape sums over them (``outcrop.workers``).
        self.slot: Slot | None = None
        self.shared_limits: SharedLimits | None = None
        self.snapshots: Snapshots | None = None
        self.ready = False
        # Set by ``factory`` (the process is an ``outcrop serve`` worker): process-wide tuning applies.
        self.serving = False

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        store = Store(self.config.resolved_database_url)
        store.migrate()
        key = store.write_sync(load_token_key)
        self.store = store
        # Shared by the workers of this server (they share the data directory): outcrop.generations.
        self.generations = Generations(self.config.data_dir / "generations")
        if self.serving and self.config.worker_processes > 1:
            server = os.environ.get(SERVER_ENV) or str(os.getppid())
            self.slot = Slot(self.config.data_dir / "workers" / server)
            self.shared_limits = SharedLimits(self.slot.directory / "limits", self.slot)
            self.snapshots = Snapshots(self.slot, self.generations, self._state)
        self._bind(store, PageTokens(key), self.generations)
        self.ready = True

    def _state(self) -> dict[str, Any]:
        """What this worker adds to a scrape of the server."""
        assert self.runtime is not None
        return {"routing": self.runtime.router.status(), "metrics": self.metrics.families()}

    def stop(self) -> None:
        self.ready = False
        if self.store is not None:
            # First, so that a request's transaction left open on SQLite (its BEGIN done, the loop no longer
            # running to finish it) is rolled back and cannot hold the write lock the meter needs below.
            self.store.close_loop_writes()
        if self.meter is not None:
            self.meter.close()  # every event emitted is in the database when it returns
            self.meter = None
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.generations is not None:
            self.generations.close()
        if self.shared_limits is not None:
            self.shared_limits.close()
            self.shared_limits = None
        if self.slot is not None:
            self.slot.close()
            self.slot = None

    def _bind(self, store: Store, tokens: PageTokens, generations: Generations) -> None:
        profiles = InferenceProfiles(store, self.catalog, self.config, tokens)
        self.profiles = profiles
        tags = Tags(store, profiles, self.config.max_tags_per_resource)
        models = FoundationModels(self.catalog)
        self.authorizer = Authorizer(self.catalog, store)
        if self.strict:
            self.authenticator = Authenticator(Identities(store), self.config.default_region, self.catalog.regions)
        self.chaos.attach(store, generations)
        if self.config.metering:
            prices = Prices.load(self.catalog, self.config.prices)
            self.meter = Meter(
                store, self.catalog, self.config.data_dir / "metering", self.metrics.registry, prices,
                fsync=self.config.metering_fsync, fsync_interval=self.config.metering_fsync_interval_ms / 1000,
                ingest=self.config.metering_ingest, generations=generations,
            )
            self.meter.start()
            self.metrics.before_render.append(self.meter.metrics.apply)
        self.runtime = Runtime(self.catalog, store, self.config, self.chaos, sink=self.meter,
                               deletions=Watch(generations, PROFILES), limits=self.shared_limits)
        self.metrics.registry.register(RoutingCollector(self.runtime.router))
        self.handlers.update(self.runtime.handlers())
        self.handlers.update(
            {
                ("bedrock", "CreateInferenceProfile"): profiles.create,
                ("bedrock", "GetInferenceProfile"): profiles.get,
                ("bedrock", "ListInferenceProfiles"): profiles.list,
                ("bedrock", "DeleteInferenceProfile"): self._forgetting(profiles.delete),
                ("bedrock", "TagResource"): self._retagging(tags.tag_resource),
                ("bedrock", "UntagResource"): self._retagging(tags.untag_resource),
                ("bedrock", "ListTagsForResource"): tags.list_tags_for_resource,
                ("bedrock", "ListFoundationModels"): models.list,
                ("bedrock", "GetFoundationModel"): models.get,
            }
        )

    def _forgetting(self, handler: Handler) -> Handler:
        """DeleteInferenceProfile, after which this process no longer resolves the profile for invocations."""

        async def delete(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
            result = await handler(ctx, params)
            if self.runtime is not None:
                profile_id = params["inferenceProfileIdentifier"].rsplit("/", 1)[-1]
                self.runtime.resolver.forget(ctx.account, ctx.region, profile_id)
            if self.generations is not None:
                self.generations.bump(PROFILES)  # the other workers of this server forget it too
            return result

        return delete

    def _retagging(self, handler: Handler) -> Handler:
        """A tagging operation that also refreshes metering's tag snapshot (and budgets) at once."""

        async def tag(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
            result = await handler(ctx, params)
            if self.meter is not None:
                self.meter.invalidate_tags(ctx.account, ctx.region, params["resourceARN"].rsplit("/", 1)[-1])
            if self.generations is not None:
                self.generations.bump(TAGS)  # the other workers of this server read the tags again
            return result

        return tag

    # -- ASGI ------------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.start()
                except Exception as e:
                    log.exception("outcrop failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                if self.serving:
                    _tune_worker(self.config)
                if self.snapshots is not None:
                    self.snapshots.start()
                await send({"type": "lifespan.startup.complete"})
                housekeeping = asyncio.create_task(self._housekeeping())
            elif message["type"] == "lifespan.shutdown":
                housekeeping.cancel()
                if self.snapshots is not None:
                    await self.snapshots.stop()
                if self.runtime is not None:
                    await self.runtime.close()
                self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _housekeeping(self) -> None:
        """Forget expired idempotency tokens, once at start and then hourly, off the event loop."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(None, self.profiles.expire_tokens_sync)
            except SQLAlchemyError:
                log.exception("expiring idempotency tokens failed; will retry")
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = new_request_id()
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1").split("?", 1)[0]
        method = scope["method"]
        caller: Caller | None = None
        body: bytes | None = None
        if self.strict and not (method == "GET" and raw_path == "/_outcrop/health"):
            # Strict mode: nothing but health is answered before the caller is known.
            try:
                if not any(k.lower() == b"authorization" for k, _ in scope["headers"]) \
                        and b"X-Amz-Signature=" not in scope.get("query_string", b""):
                    raise AccessDenied(MISSING_AUTHORIZATION)  # before reading any body
                body = await self._read_body(scope, receive)
                caller = await self._authenticate(scope, raw_path, body)
                if raw_path.startswith("/_outcrop/") or raw_path == "/metrics":
                    admin_check(caller.identity, raw_path)
            except ServiceError as e:
                await _respond(send, *error_response(None, e), request_id)
                return
        if raw_path == "/_outcrop/chaos" or raw_path.startswith("/_outcrop/chaos/"):
            try:
                body = await self._read_body(scope, receive) if body is None else body
            except ServiceError as e:
                await _respond(send, *error_response(None, e), request_id)
                return
            await _respond(send, *await chaos_endpoint(self.chaos, method, raw_path, body), request_id)
            return
        if raw_path == "/_outcrop/usage" and self.store is not None:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            query = scope.get("query_string", b"")
            account = self._identify(headers, request_id, caller, query).account
            await _respond(send, *await usage_endpoint(self.meter, self.store, account, method, query), request_id)
            return
        if raw_path.startswith("/_outcrop/") or raw_path == "/metrics":
            await self._admin(method, raw_path, request_id, send)
            return
        op: Operation | None = None
        try:
            match = self.services.match(method, raw_path)
            if match is None:
                raise UnknownOperation(f"No Bedrock operation is served at {method} {raw_path}.")
            op, labels = match
            handler = self.handlers.get((op.service, op.name))
            if handler is None:
                raise NotImplementedOperation(
                    f"outcrop does not implement {op.service}:{op.name}. It serves the inference-profile "
                    "operations of bedrock and the invocation operations of bedrock-runtime."
                )
            if not self.ready:
                raise InternalServer("The server is starting; retry shortly.")
            body = await self._read_body(scope, receive) if body is None else body
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            query = scope.get("query_string", b"")
            ctx = self._identify(headers, request_id, caller, query)
            params = parse_request(op, labels, query, headers, body)
            if caller is not None and self.authorizer is not None:
                await self.authorizer.authorize(ctx, op.name, params)
            result = await handler(ctx, params)
            if op.has_event_stream_output:
                status, out_headers, frames = stream_output(op, result, request_id)
                await _respond_stream(send, status, out_headers, frames, request_id, receive)
                return
            status, out_headers, payload = serialize_output(op, result)
        except ServiceError as e:
            status, out_headers, payload = error_response(op, e)
        except Exception:
            log.exception("request %s failed", request_id)
            status, out_headers, payload = error_response(
                op, InternalServer(f"An internal error occurred (request {request_id}).")
            )
        await _respond(send, status, out_headers, payload, request_id)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        """The whole body, within ``max_request_bytes`` (refused from Content-Length before reading, when
        declared) and ``body_read_timeout_seconds`` (a client trickling its body holds nothing for long)."""
        limit = self.config.max_request_bytes
        declared: bytes | None = None
        for name, value in scope["headers"]:
            lowered = name.lower()
            if lowered == b"content-length":
                declared = value.strip()
                if declared.isdigit() and int(declared) > limit:
                    raise RequestTooLarge(_too_large(limit))
            elif lowered == b"transfer-encoding":
                declared = b"chunked"
        if declared in (None, b"0") and scope["method"] in _BODILESS:
            # A GET or DELETE that declares no body (every Bedrock one): nothing to wait for.
            return b""
        extensions = scope.get("extensions")
        in_hand = extensions.get("outcrop.body") if extensions else None
        if in_hand is not None and (body := in_hand()) is not None:
            # outcrop's HTTP/1.1 server already holds the whole body (most requests arrive in one piece).
            if len(body) > limit:
                raise RequestTooLarge(_too_large(limit))
            return body
        try:
            with within(self.config.body_read_timeout_seconds):
                return await _read_body(receive, limit)
        except TimeoutError:
            raise RequestTimeout(
                f"The request body was not received within {self.config.body_read_timeout_seconds:g} seconds."
            ) from None

    async def _authenticate(self, scope: Scope, raw_path: str, body: bytes) -> Caller:
        if self.authenticator is None:
            raise InternalServer("The server is starting; retry shortly.")
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
        query = scope.get("query_string", b"").decode("latin-1")
        return await self.authenticator.authenticate(RawRequest(scope["method"], raw_path, query, headers, body))

    def _identify(
        self, headers: dict[str, str], request_id: str, caller: Caller | None = None, query: bytes = b""
    ) -> RequestContext:
        if caller is not None:
            identity = caller.identity
            return RequestContext(request_id=request_id, account=identity.account, region=caller.region,
                                  access_key=identity.key_id, principal_arn=identity.principal_arn, identity=identity)
        account, region, key = self.config.default_account, self.config.default_region, None
        m = CREDENTIAL.search(headers.get("authorization", ""))
        if m is None and b"X-Amz-Credential=" in query:  # a presigned URL: its scope is in the query
            m = _presigned_credential(query)
        if m is not None:
            key, region = m.group(1), m.group(3)
            account = self.config.accounts.get(key, account)
        return RequestContext(request_id=request_id, account=account, region=region, access_key=key)

    async def _admin(self, method: str, path: str, request_id: str, send: Send) -> None:
        if path in ("/metrics", "/_outcrop/metrics") and method == "GET":
            if self.snapshots is None:
                body, content_type = self.metrics.render()
            else:  # the server's figures: every worker's, summed, with the counts of workers gone
                states, gone = await self.snapshots.gather()
                body, content_type = self.metrics.render_with(
                    [*(s["metrics"] for s in states.values()), *(r["metrics"] for r in gone)]
                )
            await _respond(send, 200, [(b"content-type", content_type.encode())], body, request_id)
            return
        if path == "/_outcrop/routing" and method == "GET" and self.runtime is not None:
            if self.snapshots is None:
                body = orjson.dumps(merge_routing([self.runtime.router.status()]))
            else:  # the server's: every worker's, with the counts of workers gone
                states, gone = await self.snapshots.gather()
                retired = [r["routing"] for r in gone if r.get("routing")]
                body = orjson.dumps(merge_routing([self.runtime.router.status(), *(s["routing"] for s in states.values())],
                                                  retired))
            await _respond(send, 200, [(b"content-type", b"application/json")], body, request_id)
            return
        if path == "/_outcrop/health" and method == "GET":
            status = 200 if self.ready else 503
            body = orjson.dumps({"status": "ok" if self.ready else "starting"})
            await _respond(send, status, [(b"content-type", b"application/json")], body, request_id)
            return
        status, headers, body = error_response(None, UnknownOperation(f"No outcrop endpoint at {method} {path}."))
        await _respond(send, status, headers, body, request_id)


def _presigned_credential(query: bytes) -> re.Match[str] | None:
    credential = query_param(query.decode("latin-1"), "X-Amz-Credential")
    return None if credential is None else CREDENTIAL.fullmatch("Credential=" + credential)


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise RequestTooLarge(_too_large(limit))
            chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _too_large(limit: int) -> str:
    return f"The request body is larger than the {limit} bytes this server accepts (max_request_bytes)."


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes, request_id: str
) -> None:
    headers = [
        *headers,
        (b"x-amzn-requestid", request_id.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _respond_stream(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], frames: AsyncIterator[bytes], request_id: str,
    receive: Receive | None = None,
) -> None:
    """An event stream: each frame sent (and flushed) as the events arrive; stopped when the client leaves."""
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"x-amzn-requestid", request_id.encode())]})
    gone = asyncio.ensure_future(_disconnect(receive)) if receive is not None else None
    # Frames made from the same chunk of the backend's answer go out in one message (outcrop.batching).
    # The first frame goes out on its own, at once (its event is in hand before the stream is answered):
    # that is the stream's time to first byte, which then waits for neither the rest of its chunk nor, with
    # many streams answered at once, the other streams' whole chunks.
    batches = None
    try:
        first = await anext(frames, None)
        if first is None:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send({"type": "http.response.body", "body": first, "more_body": True})
        batches = Batches(frames)
        async for batch in batches:
            if gone is not None and gone.done():
                break
            body = batch[0] if len(batch) == 1 else b"".join(batch)
            await send({"type": "http.response.body", "body": body, "more_body": True})
        else:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        if gone is not None:
            gone.cancel()
        # A client gone mid-stream: stop the stream now, so its usage is recorded now.
        await (batches.aclose() if batches is not None else aclose(frames))


async def _disconnect(receive: Receive) -> None:
    """Returns when the client has gone (the request body was read before the stream began)."""
    while (await receive())["type"] != "http.disconnect":
        pass


GC_THRESHOLDS = (10_000, 10, 10)  # young (net allocations), middle and full (collections before)


def _tune_worker(config: Config) -> None:
    """Process-wide settings for a server worker, once everything long-lived has been loaded."""
    sys.setswitchinterval(config.switch_interval_ms / 1000)
    # The service models, the catalogue and the libraries' own state are ~100k objects that live as long as
    # the process: a full collection walked them all (~55 ms here, a pause every request in flight waited
    # out). Frozen, the collector leaves them alone.
    gc.collect()
    gc.freeze()
    # Young collections: at Python's default (every 700 net allocations) one came every few dozen requests
    # under load, walked the objects of every request then in flight, and promoted them, which set off
    # middle and full collections too: at 64 concurrent Converse calls ~6% of the event loop's time went to
    # the collector (bench/runtime, gc.callbacks). Requests, failed ones included, leave no reference cycles
    # (tests/unit/test_no_garbage_cycles.py), so young collections can be rare: at 10,000 there were 2 in
    # 24 s of that load, of 7 ms each. Whatever still leaves a cycle (some rarer failure's traceback, say)
    # waits for the next young collection, and at this threshold even one full of them is a short pause.
    gc.set_threshold(*GC_THRESHOLDS)


def create_app(config: Config | None = None) -> Outcrop:
    return Outcrop(config or load_config())


def factory() -> Outcrop:
    """Entry point for ASGI servers in factory mode (``outcrop serve``): the config comes from the environment."""
    config = load_config()
    logs.configure(config.log_level, config.log_format)
    app = create_app(config)
    app.serving = True
    return app
