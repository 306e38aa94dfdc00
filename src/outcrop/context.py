"""What every operation knows about the request it serves, and nothing about HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from outcrop.auth.identities import Identity


@dataclass(slots=True)
class RequestContext:
    request_id: str
    account: str
    region: str
    access_key: str | None = None
    # The caller as an IAM-style principal ARN (for logs, metering and policy messages).
    principal_arn: str = ""
    # The authenticated caller in strict mode (its policy is checked by ``outcrop.auth.authorize``).
    identity: Identity | None = None

    def __post_init__(self) -> None:
        if not self.principal_arn:
            self.principal_arn = f"arn:aws:iam::{self.account}:root"
