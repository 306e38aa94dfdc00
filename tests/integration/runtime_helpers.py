"""Shared pieces of the runtime integration tests: a module-scoped server and request bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import ServerProcess

ACCOUNT = "123456789012"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
US_HAIKU = "us." + HAIKU
HAIKU_PROFILE_ARN = f"arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/{US_HAIKU}"


def start_server(tmp: Path, config: str | None = None, **env: str) -> ServerProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    config_file = None
    if config is not None:
        config_file = tmp / "outcrop.toml"
        config_file.write_text(config)
    return ServerProcess(
        database_url=f"sqlite:///{tmp / 'outcrop.db'}", data_dir=tmp, config_file=config_file, extra_env=env
    ).start()


def server_for_module(tmp: Path, config: str | None = None) -> Iterator[ServerProcess]:
    srv = start_server(tmp, config)
    try:
        yield srv
    finally:
        srv.stop()


def anthropic_body(text: str = "Hello there", **extra: Any) -> bytes:
    return json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
                       "messages": [{"role": "user", "content": text}], **extra}).encode()


USER_HELLO = [{"role": "user", "content": [{"text": "Hello there"}]}]
