"""Inference-profile identifiers: IDs and ARNs, resolved against the caller's account and Region."""

from __future__ import annotations

import re
from dataclasses import dataclass

from outcrop.context import RequestContext
from outcrop.control.catalog import partition_of

APPLICATION_ID = re.compile(r"[a-z0-9]{12}")
PROFILE_ARN = re.compile(
    r"arn:(?P<partition>aws(?:-us-gov|-cn|-iso|-iso-b)?):bedrock:(?P<region>[0-9a-z-]{0,20}):"
    r"(?P<account>[0-9]{12}|):(?P<kind>inference-profile|application-inference-profile|foundation-model)/"
    r"(?P<id>[a-zA-Z0-9-:.]+)"
)

@dataclass(frozen=True)
class ProfileRef:
    """What an identifier names, once the caller's account and Region are applied."""

    kind: str  # "SYSTEM_DEFINED" or "APPLICATION"
    profile_id: str
    visible: bool  # False when the ARN names another account or Region


def parse_identifier(identifier: str, ctx: RequestContext) -> ProfileRef:
    """Resolve an ID or ARN. IDs of 12 ``[a-z0-9]`` are application profiles; others are system IDs."""
    m = PROFILE_ARN.fullmatch(identifier)
    if m is None:
        kind = "APPLICATION" if APPLICATION_ID.fullmatch(identifier) else "SYSTEM_DEFINED"
        return ProfileRef(kind, identifier, True)
    visible = (
        m["region"] in ("", ctx.region)
        and m["account"] in ("", ctx.account)
        and m["partition"] == partition_of(ctx.region)
        and m["kind"] != "foundation-model"
    )
    kind = "APPLICATION" if m["kind"] == "application-inference-profile" else "SYSTEM_DEFINED"
    return ProfileRef(kind, m["id"], visible)


def application_arn(ctx_region: str, account: str, profile_id: str) -> str:
    return f"arn:{partition_of(ctx_region)}:bedrock:{ctx_region}:{account}:application-inference-profile/{profile_id}"
