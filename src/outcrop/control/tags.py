"""TagResource, UntagResource and ListTagsForResource on application inference profiles.

Tags are case-sensitive keys with one value each; TagResource overwrites. At most 50 per resource,
counting those it already has; keys starting with ``aws:`` are AWS's and refused. System-defined
profiles do not support tagging (ValidationException); an ARN of any other Bedrock resource type names
nothing outcrop holds (ResourceNotFoundException).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from outcrop.context import RequestContext
from outcrop.control.identifiers import PROFILE_ARN, parse_identifier
from outcrop.errors import NotFound, TooManyTags, ValidationError
from outcrop.store.engine import Store
from outcrop.store.schema import inference_profiles, profile_tags


def check_new_tags(tags: Sequence[dict[str, str]], *, existing: int, limit: int, resource: str) -> None:
    """Refuse reserved or repeated keys, and more tags than a resource may carry."""
    seen: set[str] = set()
    for i, tag in enumerate(tags, 1):
        key = tag["key"]
        if key.lower().startswith("aws:"):
            raise ValidationError(
                f"1 validation error detected: Value '{key}' at 'tags.{i}.member.key' failed to satisfy "
                "constraint: Member must not start with 'aws:', which is reserved for AWS use"
            )
        if key in seen:
            raise ValidationError(f"The tag key {key} appears more than once in the request.")
        seen.add(key)
    if existing + len(seen) > limit:
        raise TooManyTags(
            f"The request contains more tags than can be associated with a resource ({limit} tags per "
            f"resource). {resource} would have {existing + len(seen)}.",
            resourceName=resource,
        )


class Tags:
    def __init__(self, store: Store, profiles: Any, limit: int) -> None:
        self.store = store
        self.profiles = profiles  # InferenceProfiles: resolves ARNs and knows the catalogue
        self.limit = limit

    def _profile_id(self, ctx: RequestContext, arn: str) -> str:
        m = PROFILE_ARN.fullmatch(arn)
        if m is None or m["kind"] == "foundation-model":
            raise NotFound(f"The resource {arn} was not found.")
        ref = parse_identifier(arn, ctx)
        if ref.kind == "SYSTEM_DEFINED":
            if ref.visible and self.profiles.catalog.system_profile(ctx.region, ref.profile_id):
                raise ValidationError("System-defined inference profiles do not support tagging.")
            raise NotFound(f"The resource {arn} was not found.")
        if not ref.visible:
            raise NotFound(f"The resource {arn} was not found.")
        return ref.profile_id

    async def tag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arn = params["resourceARN"]
        profile_id = self._profile_id(ctx, arn)
        tags = params["tags"]
        check_new_tags(tags, existing=0, limit=self.limit, resource=arn)

        def write(conn: Connection) -> dict[str, Any]:
            _require_profile(conn, ctx, profile_id, arn, lock=True)
            current = set(tags_of(conn, ctx.account, ctx.region, profile_id))
            new_keys = {t["key"] for t in tags}
            check_new_tags(tags, existing=len(current - new_keys), limit=self.limit, resource=arn)
            if new_keys:
                conn.execute(delete(profile_tags).where(*_where(ctx, profile_id), profile_tags.c.key.in_(new_keys)))
                conn.execute(
                    insert(profile_tags),
                    [{"account": ctx.account, "region": ctx.region, "profile_id": profile_id,
                      "key": t["key"], "value": t["value"]} for t in tags],
                )
            return {}

        return await self.store.write(write)

    async def untag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arn = params["resourceARN"]
        profile_id = self._profile_id(ctx, arn)
        keys = params["tagKeys"]
        for i, key in enumerate(keys, 1):
            if key.lower().startswith("aws:"):
                raise ValidationError(
                    f"1 validation error detected: Value '{key}' at 'tagKeys.{i}.member' failed to satisfy "
                    "constraint: Member must not start with 'aws:', which is reserved for AWS use"
                )

        def write(conn: Connection) -> dict[str, Any]:
            _require_profile(conn, ctx, profile_id, arn, lock=True)
            if keys:
                conn.execute(delete(profile_tags).where(*_where(ctx, profile_id), profile_tags.c.key.in_(keys)))
            return {}

        return await self.store.write(write)

    async def list_tags_for_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arn = params["resourceARN"]
        profile_id = self._profile_id(ctx, arn)

        def read(conn: Connection) -> dict[str, Any]:
            _require_profile(conn, ctx, profile_id, arn)
            return {"tags": [{"key": k, "value": v} for k, v in sorted(tags_of(conn, ctx.account, ctx.region, profile_id).items())]}

        return await self.store.read(read)


def _where(ctx: RequestContext, profile_id: str) -> tuple[Any, ...]:
    c = profile_tags.c
    return (c.account == ctx.account, c.region == ctx.region, c.profile_id == profile_id)


def tags_of(conn: Connection, account: str, region: str, profile_id: str) -> dict[str, str]:
    c = profile_tags.c
    rows = conn.execute(
        select(c.key, c.value).where(c.account == account, c.region == region, c.profile_id == profile_id)
    )
    return {r.key: r.value for r in rows}


def _require_profile(conn: Connection, ctx: RequestContext, profile_id: str, arn: str, lock: bool = False) -> None:
    """Raise NotFound unless the profile exists. ``lock``: hold the profile's row until the transaction ends
    (PostgreSQL; SQLite's writes are serialized anyway), so that tag writes of one profile from several
    processes run one after another: each sees the tags the last one left (the 50-tag limit holds, an
    overwritten key is never inserted twice) and none lands on a profile deleted meanwhile."""
    c = inference_profiles.c
    query = select(c.profile_id).where(c.account == ctx.account, c.region == ctx.region, c.profile_id == profile_id)
    found = conn.execute(query.with_for_update() if lock else query).first()
    if found is None:
        raise NotFound(f"The resource {arn} was not found.")
