"""Inference profiles: CreateInferenceProfile, GetInferenceProfile, ListInferenceProfiles,
DeleteInferenceProfile.

System-defined profiles come from the catalogue, rendered with the caller's account and Region.
Application profiles live in the store, one row each, scoped to (account, Region): a profile of another
account or Region does not exist as far as a caller can tell.

Decisions where AWS's behaviour is unknown follow ``shared/spec/README.md``: ConflictException for a
duplicate name or a reused ``clientRequestToken`` with other parameters; the original response for a
replayed token; ValidationException for system profiles on Delete; pages ordered by ``updatedAt``
(system) or ``createdAt`` then ID (application), resumable from an opaque, signed ``nextToken``.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import Connection, Table, bindparam, delete, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from outcrop.config import Config
from outcrop.context import RequestContext
from outcrop.control.catalog import Catalog, SystemProfile, partition_of
from outcrop.control.identifiers import PROFILE_ARN, application_arn, parse_identifier
from outcrop.control.pagination import PageTokens
from outcrop.control.tags import check_new_tags
from outcrop.errors import Conflict, NotFound, ServiceQuotaExceeded, ValidationError
from outcrop.store.engine import Recheck, Statement, Store
from outcrop.store.schema import idempotency_tokens, inference_profiles, profile_counts, profile_tags
from outcrop.store.upsert import insert_ignore

UTC = dt.UTC
ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
ID_SPACE = 36**12
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
COPY_FROM_MESSAGE = "copyFrom must be a valid inference profile model source ARN."
DEFAULT_PAGE_SIZE = 100
OPERATION_CREATE = "CreateInferenceProfile"


class _Clock:
    """Microseconds since the epoch, strictly increasing within this process (ties broken by ID anyway)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def now_us(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns() // 1000)
            return self._last


class _Entropy:
    """The kernel's random bytes, fetched 4 KiB at a time: one system call per 256 IDs, not one per ID."""

    def __init__(self) -> None:
        self._pid = 0
        self._buffer = b""
        self._offset = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._pid != os.getpid() or self._offset + n > len(self._buffer):
                # (A forked child must not reuse what its parent had left.)
                self._pid, self._buffer, self._offset = os.getpid(), secrets.token_bytes(4096), 0
            out = self._buffer[self._offset : self._offset + n]
            self._offset += n
            return out


_ENTROPY = _Entropy()


def new_profile_id() -> str:
    """12 characters of ``[a-z0-9]``, uniformly random (128 random bits reduced modulo 36**12)."""
    n = int.from_bytes(_ENTROPY.take(16)) % ID_SPACE
    digits = []
    for _ in range(12):
        n, d = divmod(n, 36)
        digits.append(ID_ALPHABET[d])
    return "".join(digits)


def from_us(us: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=us)


def row_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "inferenceProfileName": row["name"],
        "createdAt": from_us(row["created_us"]),
        "updatedAt": from_us(row["updated_us"]),
        "inferenceProfileArn": application_arn(row["region"], row["account"], row["profile_id"]),
        "models": [{"modelArn": a} for a in orjson.loads(row["models"])],
        "inferenceProfileId": row["profile_id"],
        "status": "ACTIVE",
        "type": "APPLICATION",
    }
    if row["description"] is not None:
        out["description"] = row["description"]
    return out


def not_found(identifier: str) -> NotFound:
    return NotFound(f"Inference profile {identifier} not found.")


class InferenceProfiles:
    """The inference-profile operations of the ``bedrock`` control plane."""

    def __init__(self, store: Store, catalog: Catalog, config: Config, tokens: PageTokens) -> None:
        self.store = store
        self.catalog = catalog
        self.config = config
        self.tokens = tokens
        self.clock = _Clock()

    # -- create ----------------------------------------------------------------------------------------
    async def create(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name: str = params["inferenceProfileName"]
        description: str | None = params.get("description")
        tags = params.get("tags") or []
        check_new_tags(tags, existing=0, limit=self.config.max_tags_per_resource, resource=name)
        copy_from = params["modelSource"]["copyFrom"]
        models = self._source_models(ctx, copy_from)
        token: str | None = params.get("clientRequestToken")
        # What a replay of the same token must match (only a request with a token is ever replayed).
        request_hash = "" if token is None else hashlib.sha256(
            orjson.dumps(
                [name, description, copy_from, sorted((t["key"], t["value"]) for t in tags)]
            )
        ).hexdigest()
        quota = self.config.application_profile_quota
        models_json = orjson.dumps(models).decode()

        def write(conn: Connection) -> dict[str, Any]:
            if token is not None:
                replay = _replay(conn, ctx, token, request_hash)
                if replay is not None:
                    return replay
            now = self.clock.now_us()
            profile_id = new_profile_id()
            response = {
                "inferenceProfileArn": application_arn(ctx.region, ctx.account, profile_id),
                "status": "ACTIVE",
            }
            # Three statements in the common case (the writer's savepoint around them): take a slot of the
            # quota, insert the profile, release. A duplicate name is caught by the UNIQUE constraint, not
            # looked up first. The quota comes first so that, on PostgreSQL, its row lock orders every
            # create of an account and Region: a name can only be contended by a holder of that lock.
            try:
                _take_quota(conn, ctx, quota)
                _INSERT_PROFILE.execute(
                    conn,
                    {
                        "account": ctx.account,
                        "region": ctx.region,
                        "profile_id": profile_id,
                        "name": name,
                        "description": description,
                        "models": models_json,
                        "source_arn": copy_from,
                        "created_us": now,
                        "updated_us": now,
                    },
                )
                if tags:
                    _INSERT_TAG.executemany(
                        conn,
                        [
                            {"account": ctx.account, "region": ctx.region, "profile_id": profile_id,
                             "key": t["key"], "value": t["value"]}
                            for t in tags
                        ],
                    )
                if token is not None:
                    _INSERT_TOKEN.execute(
                        conn,
                        {
                            "account": ctx.account, "region": ctx.region, "operation": OPERATION_CREATE,
                            "token": token, "request_hash": request_hash,
                            "response": orjson.dumps(response).decode(), "created_us": now,
                        },
                    )
            except (IntegrityError, ServiceQuotaExceeded) as e:
                # The name is taken, the token stored (maybe by another process since the look above), or
                # no slot is left: roll all of it back (the slot too), then decide what to answer.
                error = _duplicate_name(name) if isinstance(e, IntegrityError) else e
                raise Recheck(lambda c: _lost_race(c, ctx, token, request_hash, name, error)) from None
            return response

        return await self.store.write(write)

    def _source_models(self, ctx: RequestContext, copy_from: str) -> list[str]:
        m = PROFILE_ARN.fullmatch(copy_from)
        # A foundation model belongs to no account: Bedrock refuses its ARN with one, the caller's own too
        # (awslabs/aws-solutions-constructs#1387, fixed there by dropping the account: #1390).
        if m is None or m["kind"] == "application-inference-profile" or (
            m["kind"] == "foundation-model" and m["account"]
        ):
            raise ValidationError(COPY_FROM_MESSAGE)
        # A well-formed ARN of another partition, Region or account names a source that is not offered
        # here: not found, like any other source outside the caller's Region.
        other_place = (
            m["partition"] != partition_of(ctx.region)
            or m["region"] not in ("", ctx.region)
            or m["account"] not in ("", ctx.account)
        )
        if m["kind"] == "foundation-model":
            model = None if other_place else self.catalog.model_in(ctx.region, m["id"])
            if model is None:
                raise NotFound("Model not found")
            return [model.arn(ctx.region)]
        profile = None if other_place else self.catalog.system_profile(ctx.region, m["id"])
        if profile is None:
            raise NotFound("Inference profile not found")
        return profile.model_arns()

    # -- get -------------------------------------------------------------------------------------------
    async def get(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        identifier = params["inferenceProfileIdentifier"]
        ref = parse_identifier(identifier, ctx)
        _check_project(params, ref.kind)
        if not ref.visible:
            raise not_found(identifier)
        if ref.kind == "SYSTEM_DEFINED":
            profile = self.catalog.system_profile(ctx.region, ref.profile_id)
            if profile is None:
                raise not_found(identifier)
            return profile.summary(ctx.account)
        row = await self.store.read(lambda conn: _select_profile(conn, ctx, ref.profile_id))
        if row is None:
            raise not_found(identifier)
        return row_summary(row)

    # -- list ------------------------------------------------------------------------------------------
    async def list(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        kind = params.get("typeEquals") or "SYSTEM_DEFINED"
        _check_project(params, kind)
        limit = params.get("maxResults") or DEFAULT_PAGE_SIZE
        scope = (ctx.account, ctx.region, kind)
        after = self.tokens.decode(params["nextToken"], scope) if params.get("nextToken") else None
        if kind == "SYSTEM_DEFINED":
            profiles = self.catalog.system_profiles_in(ctx.region)
            start = 0
            if after is not None:
                key = (dt.datetime.fromtimestamp(0, UTC) + dt.timedelta(microseconds=after[0]), after[1])
                start = bisect.bisect_right([(p.updated_at, p.profile_id) for p in profiles], key)
            page: list[SystemProfile] = profiles[start : start + limit]
            summaries = [p.summary(ctx.account) for p in page]
            more = start + limit < len(profiles)
            last = (_us(page[-1].updated_at), page[-1].profile_id) if page else None
        else:
            rows = await self.store.read(lambda conn: _page_rows(conn, ctx, after, limit + 1))
            more = len(rows) > limit
            rows = rows[:limit]
            summaries = [row_summary(r) for r in rows]
            last = (rows[-1]["created_us"], rows[-1]["profile_id"]) if rows else None
        out: dict[str, Any] = {"inferenceProfileSummaries": summaries}
        if more and last is not None:
            out["nextToken"] = self.tokens.encode(last, scope)
        return out

    # -- delete ----------------------------------------------------------------------------------------
    async def delete(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        identifier = params["inferenceProfileIdentifier"]
        ref = parse_identifier(identifier, ctx)
        if not ref.visible:
            raise not_found(identifier)
        if ref.kind == "SYSTEM_DEFINED":
            if self.catalog.system_profile(ctx.region, ref.profile_id) is None:
                raise not_found(identifier)
            raise ValidationError(
                f"{identifier} is a system-defined inference profile; only application inference profiles "
                "can be deleted."
            )

        def write(conn: Connection) -> dict[str, Any]:
            key = _key(ctx, ref.profile_id)
            deleted = conn.execute(delete(inference_profiles).where(*key)).rowcount
            if not deleted:
                raise not_found(identifier)
            conn.execute(delete(profile_tags).where(*_tag_key(ctx, ref.profile_id)))
            conn.execute(
                update(profile_counts)
                .where(profile_counts.c.account == ctx.account, profile_counts.c.region == ctx.region)
                .values(n=profile_counts.c.n - 1)
            )
            return {}

        return await self.store.write(write)

    # -- housekeeping ----------------------------------------------------------------------------------
    def expire_tokens_sync(self, now_us: int | None = None) -> int:
        """Forget idempotency tokens older than the configured lifetime (never sooner than 24 hours)."""
        hours = max(self.config.idempotency_ttl_hours, 24)
        cutoff = (now_us or self.clock.now_us()) - hours * 3600 * 1_000_000
        return self.store.write_sync(
            lambda conn: conn.execute(
                delete(idempotency_tokens).where(idempotency_tokens.c.created_us < cutoff)
            ).rowcount
        )


def _us(value: dt.datetime) -> int:
    delta = value - dt.datetime.fromtimestamp(0, UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _key(ctx: RequestContext, profile_id: str) -> tuple[Any, ...]:
    c = inference_profiles.c
    return (c.account == ctx.account, c.region == ctx.region, c.profile_id == profile_id)


def _tag_key(ctx: RequestContext, profile_id: str) -> tuple[Any, ...]:
    c = profile_tags.c
    return (c.account == ctx.account, c.region == ctx.region, c.profile_id == profile_id)


# Hot-path statements are built once, with bind parameters, so each call reuses the compiled SQL.
_P = inference_profiles.c
_SELECT_PROFILE = Statement(
    select(inference_profiles).where(
        _P.account == bindparam("account"), _P.region == bindparam("region"), _P.profile_id == bindparam("pid")
    )
)
_FIRST_PAGE = Statement(
    select(inference_profiles)
    .where(_P.account == bindparam("account"), _P.region == bindparam("region"))
    .order_by(_P.created_us, _P.profile_id)
    .limit(bindparam("n"))
)
# A row-value comparison, so both databases resume the page as a range scan of the ordering index.
_NEXT_PAGE = Statement(
    select(inference_profiles)
    .where(
        _P.account == bindparam("account"),
        _P.region == bindparam("region"),
        tuple_(_P.created_us, _P.profile_id) > tuple_(bindparam("created"), bindparam("pid")),
    )
    .order_by(_P.created_us, _P.profile_id)
    .limit(bindparam("n"))
)
_T = idempotency_tokens.c
_FIND_TOKEN = Statement(
    select(_T.request_hash, _T.response).where(
        _T.account == bindparam("account"),
        _T.region == bindparam("region"),
        _T.operation == bindparam("operation"),
        _T.token == bindparam("token"),
    )
)
_FIND_NAME = Statement(
    select(_P.profile_id).where(
        _P.account == bindparam("account"), _P.region == bindparam("region"), _P.name == bindparam("name")
    )
)
_C = profile_counts.c
# (UPDATE reserves bind names equal to column names, hence the ``k_`` prefix.)
_TAKE_QUOTA = Statement(
    update(profile_counts)
    .where(_C.account == bindparam("k_account"), _C.region == bindparam("k_region"), _C.n < bindparam("quota"))
    .values(n=_C.n + 1)
)
_COUNT = Statement(select(_C.n).where(_C.account == bindparam("account"), _C.region == bindparam("region")))


def _inserting(table: Table) -> Statement:
    return Statement(insert(table), columns=[c.name for c in table.c])


_INSERT_PROFILE = _inserting(inference_profiles)
_INSERT_TAG = _inserting(profile_tags)
_INSERT_TOKEN = _inserting(idempotency_tokens)


def _select_profile(conn: Connection, ctx: RequestContext, profile_id: str) -> Mapping[str, Any] | None:
    params = {"account": ctx.account, "region": ctx.region, "pid": profile_id}
    return _SELECT_PROFILE.first(conn, params)


def _page_rows(
    conn: Connection, ctx: RequestContext, after: tuple[int, str] | None, n: int
) -> list[Mapping[str, Any]]:
    params: dict[str, Any] = {"account": ctx.account, "region": ctx.region, "n": n}
    if after is None:
        return _FIRST_PAGE.all(conn, params)
    params["created"], params["pid"] = after
    return _NEXT_PAGE.all(conn, params)


def _replay(conn: Connection, ctx: RequestContext, token: str, request_hash: str) -> dict[str, Any] | None:
    row = _FIND_TOKEN.first(
        conn, {"account": ctx.account, "region": ctx.region, "operation": OPERATION_CREATE, "token": token}
    )
    if row is None:
        return None
    if row["request_hash"] != request_hash:
        raise Conflict(
            f"The clientRequestToken {token} was already used for a CreateInferenceProfile request with "
            "different parameters. Use a new token for a new request."
        )
    result: dict[str, Any] = orjson.loads(row["response"])
    return result


def _take_quota(conn: Connection, ctx: RequestContext, quota: int) -> None:
    key = {"account": ctx.account, "region": ctx.region}
    take = {"k_account": ctx.account, "k_region": ctx.region, "quota": quota}
    # On PostgreSQL each statement sees what was committed when it began, so the counter may appear
    # between a take that found no row and the look that follows: go round again (at most twice).
    for _ in range(3):
        if _TAKE_QUOTA.execute(conn, take):
            return
        row = _COUNT.first(conn, key)
        if row is None:
            # The first profile of this account and Region: create its counter (or find another
            # process's), then take a slot from it.
            conn.execute(insert_ignore(conn, profile_counts, {**key, "n": 0}))
        elif row["n"] >= quota:
            break
    raise ServiceQuotaExceeded(
        f"You have reached the quota of {quota} application inference profiles in {ctx.region} for "
        f"account {ctx.account}. Delete unused profiles or raise the quota "
        "(application_profile_quota)."
    )


def _lost_race(
    conn: Connection, ctx: RequestContext, token: str | None, request_hash: str, name: str, error: Exception
) -> dict[str, Any]:
    """The answer to a create that found its name taken or no quota left: a replay, or raise the error.
    Runs after the failed attempt was rolled back.

    Statements on PostgreSQL see what was committed when each began, so another process may have committed
    this very request (same token) or this name between our checks: the token decides first (a replay is
    answered with the original response), then the name (ConflictException), then the original error.
    """
    if token is not None:
        replay = _replay(conn, ctx, token, request_hash)
        if replay is not None:
            return replay
    if isinstance(error, ServiceQuotaExceeded) and _FIND_NAME.first(
        conn, {"account": ctx.account, "region": ctx.region, "name": name}
    ):
        raise _duplicate_name(name) from None
    raise error


def _duplicate_name(name: str) -> Conflict:
    return Conflict(f"An inference profile named {name} already exists. Choose a different name.")


def _check_project(params: Mapping[str, Any], kind: str) -> None:
    project = params.get("projectIdentifier")
    if project is not None and project != "default" and kind == "APPLICATION":
        raise ValidationError(
            "Only the default project is supported for application inference profiles: "
            f"projectIdentifier must be 'default', not '{project}'."
        )

