"""Which operation acts on which resource, and whether the caller's policy allows it.

Every operation is authorized as ``bedrock:<OperationName>`` on the resource it names, as at AWS:

========================================  ====================================================
operation                                  resource
========================================  ====================================================
Get/DeleteInferenceProfile                 the profile's ARN (IDs expanded in the caller's
                                           account and Region)
CreateInferenceProfile                     ``…:application-inference-profile/*``
Tag/Untag/ListTagsForResource              ``resourceARN``
GetFoundationModel                         the foundation model's ARN
List*                                      ``*``
InvokeModel, Converse (``bedrock:InvokeModel``), InvokeModelWithResponseStream, ConverseStream
(``bedrock:InvokeModelWithResponseStream``), CountTokens: the ``modelId`` as an ARN (profile or
foundation model); then, through ``authorize_invocation``, the foundation model in the Region that
serves the call, with ``bedrock:InferenceProfileArn`` set when a profile was invoked.
``/_outcrop/…`` endpoints other than health    ``outcrop:Admin`` on ``*``; those that act on the whole
and ``/metrics``                           server (chaos, metrics, routing) need a policy that
                                           allows it (``/_outcrop/usage`` reports the caller's
                                           own account)
========================================  ====================================================

Condition keys supplied: ``aws:RequestedRegion``, ``aws:PrincipalAccount``, ``aws:PrincipalArn``,
``bedrock:InferenceProfileArn`` (invocations through a profile), ``aws:RequestTag/<key>`` and
``aws:TagKeys`` (create and tag operations), and ``aws:ResourceTag/<key>`` (application profiles;
read from the store only when the caller's policy mentions a resource tag).

A caller without a policy (open mode, or a key issued without one) is allowed everything in its account,
but not what reaches other accounts: the server-wide endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from outcrop.auth.identities import Identity
from outcrop.auth.policy import Decision, Policy, denied_message, evaluate, parse_policy
from outcrop.context import RequestContext
from outcrop.control.catalog import Catalog, partition_of
from outcrop.control.identifiers import PROFILE_ARN, application_arn, parse_identifier
from outcrop.control.tags import tags_of
from outcrop.errors import AccessDenied
from outcrop.store.engine import Store

__all__ = ["INVOKE_ACTIONS", "Authorizer", "authorize_invocation", "check"]

# Runtime operations and the IAM action each is authorized as.
INVOKE_ACTIONS = {
    "InvokeModel": "bedrock:InvokeModel",
    "Converse": "bedrock:InvokeModel",
    "InvokeModelWithResponseStream": "bedrock:InvokeModelWithResponseStream",
    "ConverseStream": "bedrock:InvokeModelWithResponseStream",
    "CountTokens": "bedrock:CountTokens",
}
ADMIN_ACTION = "outcrop:Admin"
Context = dict[str, list[str]]


@lru_cache(maxsize=1024)
def _policy(text: str) -> Policy:
    return parse_policy(text)


def _identity(ctx: RequestContext) -> Identity | None:
    identity = getattr(ctx, "identity", None)
    return identity if isinstance(identity, Identity) else None


def base_context(ctx: RequestContext) -> Context:
    return {
        "aws:requestedregion": [ctx.region],
        "aws:principalaccount": [ctx.account],
        "aws:principalarn": [ctx.principal_arn],
    }


def check(identity: Identity | None, action: str, resource: str, context: Mapping[str, Sequence[str]]) -> None:
    """Raise AccessDeniedException unless ``identity``'s policy allows ``action`` on ``resource``."""
    if identity is None or identity.policy is None:
        return
    decision = evaluate([_policy(identity.policy)], action, resource, context)
    if decision is not Decision.ALLOW:
        raise AccessDenied(denied_message(identity.principal_arn, action, resource, decision))


def authorize_invocation(
    ctx: RequestContext, operation: str, region: str, model_id: str, profile_arn: str | None = None
) -> None:
    """The runtime's check before calling a deployment: may the caller invoke ``model_id`` in ``region``?

    ``operation`` is the runtime operation's name (``Converse``, ``InvokeModel`` …); ``region`` and
    ``model_id`` are the candidate that will serve the call; ``profile_arn`` is the profile invoked, if
    any, and becomes ``bedrock:InferenceProfileArn``. Raises ``AccessDenied`` in AWS's words.
    """
    identity = _identity(ctx)
    if identity is None or identity.policy is None:
        return
    action = INVOKE_ACTIONS.get(operation, f"bedrock:{operation}")
    resource = f"arn:{partition_of(region)}:bedrock:{region}::foundation-model/{model_id}"
    context = base_context(ctx)
    if profile_arn is not None:
        context["bedrock:inferenceprofilearn"] = [profile_arn]
    check(identity, action, resource, context)


class Authorizer:
    """Authorizes each operation before it runs (strict mode; a no-op for callers without a policy)."""

    def __init__(self, catalog: Catalog, store: Store) -> None:
        self.catalog = catalog
        self.store = store

    async def authorize(self, ctx: RequestContext, operation: str, params: Mapping[str, Any]) -> None:
        identity = _identity(ctx)
        if identity is None or identity.policy is None:
            return
        action = INVOKE_ACTIONS.get(operation, f"bedrock:{operation}")
        resource = self.resource(ctx, operation, params)
        context = base_context(ctx)
        _tag_context(operation, params, context)
        if _policy(identity.policy).mentions("aws:resourcetag/"):
            for key, value in (await self._resource_tags(ctx, resource)).items():
                context[f"aws:resourcetag/{key.lower()}"] = [value]
        check(identity, action, resource, context)

    def resource(self, ctx: RequestContext, operation: str, params: Mapping[str, Any]) -> str:
        """The ARN ``operation`` acts on (``*`` for listings)."""
        if operation in ("GetInferenceProfile", "DeleteInferenceProfile"):
            return self.profile_arn(ctx, str(params.get("inferenceProfileIdentifier", "")))
        if operation == "CreateInferenceProfile":
            return f"arn:{partition_of(ctx.region)}:bedrock:{ctx.region}:{ctx.account}:application-inference-profile/*"
        if operation in ("TagResource", "UntagResource", "ListTagsForResource"):
            arn = str(params.get("resourceARN", "*"))
            return self.profile_arn(ctx, arn) if PROFILE_ARN.fullmatch(arn) else arn
        if operation == "GetFoundationModel":
            return self.model_arn(ctx, str(params.get("modelIdentifier", "")))
        if operation in INVOKE_ACTIONS:
            return self.model_arn(ctx, str(params.get("modelId", "")))
        return "*"

    def profile_arn(self, ctx: RequestContext, identifier: str) -> str:
        """The profile's own ARN, in the caller's account and Region, however the identifier names it: an
        ARN with an empty account or Region (which the operations accept) must meet the same statements as
        the full ARN, or a Deny on the full ARN could be stepped round. An ARN of another account or Region
        names nothing the caller holds, and is authorized as written."""
        ref = parse_identifier(identifier, ctx)
        if not ref.visible:
            return identifier
        if ref.kind == "APPLICATION":
            return application_arn(ctx.region, ctx.account, ref.profile_id)
        return f"arn:{partition_of(ctx.region)}:bedrock:{ctx.region}:{ctx.account}:inference-profile/{ref.profile_id}"

    def model_arn(self, ctx: RequestContext, identifier: str) -> str:
        """A modelId as the ARN it names: a foundation model's, or a profile's."""
        if identifier.startswith("arn:"):
            return identifier
        if identifier in self.catalog.models:
            return f"arn:{partition_of(ctx.region)}:bedrock:{ctx.region}::foundation-model/{identifier}"
        return self.profile_arn(ctx, identifier)

    async def _resource_tags(self, ctx: RequestContext, resource: str) -> dict[str, str]:
        m = PROFILE_ARN.fullmatch(resource)
        if m is None or m["kind"] != "application-inference-profile":
            return {}
        if m["account"] != ctx.account or m["region"] != ctx.region:
            return {}  # another account's resource: its tags are not the caller's to read
        profile_id = m["id"]
        return await self.store.read(lambda c: tags_of(c, ctx.account, ctx.region, profile_id))


def _tag_context(operation: str, params: Mapping[str, Any], context: Context) -> None:
    if operation in ("CreateInferenceProfile", "TagResource"):
        tags = [t for t in params.get("tags") or () if isinstance(t, Mapping)]
        for tag in tags:
            context[f"aws:requesttag/{str(tag.get('key', '')).lower()}"] = [str(tag.get("value", ""))]
        context["aws:tagkeys"] = [str(t.get("key", "")) for t in tags]
    elif operation == "UntagResource":
        context["aws:tagkeys"] = [str(k) for k in params.get("tagKeys") or ()]


ACCOUNT_SCOPED_ADMIN = frozenset({"/_outcrop/usage"})  # answers for the caller's own account only


def admin_check(identity: Identity | None, path: str) -> None:
    """``/_outcrop/…`` endpoints (other than health) and ``/metrics`` in strict mode: ``outcrop:Admin`` on
    ``*``. A key without a policy may do everything in its own account, so it may read its usage; chaos
    rules, metrics and routing state span every account, and need a policy that allows ``outcrop:Admin``."""
    if identity is not None and identity.policy is None and path not in ACCOUNT_SCOPED_ADMIN:
        raise AccessDenied(denied_message(identity.principal_arn, ADMIN_ACTION, path, Decision.IMPLICIT_DENY)
                           + " (a key without a policy acts only in its own account; this endpoint spans every account)")
    check(identity, ADMIN_ACTION, "*", {})
