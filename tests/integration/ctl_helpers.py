"""Helpers shared by the control-plane integration tests (issue 2): module-scoped servers, error capture.

A module-scoped server is built from conftest's ``ServerProcess`` (the same ``outcrop serve`` entry point
as the function-scoped fixtures). Tests that share it stay independent by acting as their own account:
the server's config maps many access keys to distinct accounts, and ``AccountPool`` hands out a fresh
one per test.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ServerProcess, fresh_pg_database, pg_skip_reason

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
HAIKU_FM_USE1 = f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}"
US_HAIKU_ID = f"us.{HAIKU}"
US_HAIKU_USE1 = f"arn:aws:bedrock:us-east-1::inference-profile/{US_HAIKU_ID}"
GLOBAL_SONNET_45_ID = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
EU_HAIKU_ID = f"eu.{HAIKU}"

POOL_SIZE = 400
DB_PARAMS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def pool_config() -> str:
    """``[accounts]`` mapping AKIDPOOL0000.. to 100000000000.. (one account per key)."""
    lines = ["[accounts]"]
    lines += [f'AKIDPOOL{i:04d} = "{100000000000 + i}"' for i in range(POOL_SIZE)]
    return "\n".join(lines) + "\n"


def database_for(kind: str, tmp: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'outcrop.db'}"
    reason = pg_skip_reason()
    if reason:
        pytest.skip(reason)
    return fresh_pg_database()


def module_server(kind: str, tmp: Path, config: str | None = None) -> Iterator[ServerProcess]:
    """Start one server for a whole module; stop it afterwards."""
    config_file = None
    if config is not None:
        config_file = tmp / "outcrop.toml"
        config_file.write_text(config)
    srv = ServerProcess(database_url=database_for(kind, tmp), data_dir=tmp, config_file=config_file)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@dataclass
class Caller:
    """One account on a shared server, with a client factory per Region."""

    server: ServerProcess
    access_key: str
    account: str

    def client(self, region: str = "us-east-1", **kwargs: Any) -> Any:
        return self.server.client("bedrock", region=region, access_key=self.access_key, **kwargs)


class AccountPool:
    """Hands out accounts of a server started with ``pool_config()``, never the same one twice."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self._next = itertools.count()

    def take(self) -> Caller:
        i = next(self._next)
        assert i < POOL_SIZE, "account pool exhausted; raise POOL_SIZE"
        return Caller(self.server, f"AKIDPOOL{i:04d}", str(100000000000 + i))


def unique_name(prefix: str = "p") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


@dataclass
class AwsError:
    code: str
    status: int
    message: str
    response: dict[str, Any]


def error_of(call: Callable[..., Any], *args: Any, **kwargs: Any) -> AwsError:
    """Run a boto3 call that must fail; return its AWS error code, HTTP status and message."""
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    resp = info.value.response
    return AwsError(
        code=resp["Error"]["Code"],
        status=resp["ResponseMetadata"]["HTTPStatusCode"],
        message=resp["Error"].get("Message", ""),
        response=resp,
    )


def status_of(response: dict[str, Any]) -> int:
    return int(response["ResponseMetadata"]["HTTPStatusCode"])


def list_all(client: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Every summary of ListInferenceProfiles, following nextToken, checking each page's status."""
    out: list[dict[str, Any]] = []
    token = None
    while True:
        page = client.list_inference_profiles(**kwargs, **({"nextToken": token} if token else {}))
        assert status_of(page) == 200
        out.extend(page["inferenceProfileSummaries"])
        token = page.get("nextToken")
        if not token:
            return out
