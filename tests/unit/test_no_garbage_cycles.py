"""An answered request leaves no reference cycle behind: its objects are freed by reference counting alone.

``outcrop serve`` collects young objects only every ``GC_THRESHOLDS[0]`` net allocations (``_tune_worker``),
so that the objects of the requests in flight are not walked and promoted every few dozen requests. That
is only safe while requests leave no cyclic garbage: each cycle would wait for a collection that now comes
rarely and then walks all of it at once. These requests go through the real app and outcrop's HTTP/1.1
protocol, on uvloop, and the collector is asked to keep what it would have freed.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from gc_check import kept_garbage
from test_http1_cycle import connect, on_uvloop

from outcrop.app import create_app
from outcrop.config import Config
from outcrop.server.http1 import Limits

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
CONVERSE = json.dumps({"messages": [{"role": "user", "content": [{"text": "Hello there"}]}]}).encode()


def _request(method: str, path: str, body: bytes = b"") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


async def _exchange(protocol: Any, state: Any, raw: bytes) -> None:
    answered = state.total_requests
    protocol.data_received(raw)
    for _ in range(5000):
        await asyncio.sleep(0.001)
        if state.total_requests > answered and not state.tasks:
            return
    raise AssertionError("no answer within 5 s")


def _outcrop_garbage(garbage: list[object]) -> Counter[str]:
    """Of what the collector found unreachable, outcrop's own making (frames of its code, its types)."""
    found: Counter[str] = Counter()
    for obj in garbage:
        kind = type(obj)
        if kind.__name__ == "frame" and "/outcrop/" in obj.f_code.co_filename:
            found[f"frame {obj.f_code.co_name}"] += 1
        elif kind.__module__.startswith("outcrop."):
            found[kind.__qualname__] += 1
    return found


@pytest.fixture
def app(tmp_path: Path) -> Any:
    app = create_app(Config(data_dir=tmp_path, metering_ingest="thread"))
    yield app
    app.stop()


@pytest.mark.parametrize("kind", ["converse", "converse-stream", "throttled", "invalid-model"])
def test_an_answered_invocation_leaves_no_cycle(app: Any, kind: str) -> None:
    @on_uvloop
    async def run() -> Counter[str]:
        app.start()
        protocol, transport, state = connect(app, Limits(max_header_bytes=16384, header_read_timeout=60.0,
                                                         keep_alive_timeout=60.0))
        path, body = f"/model/{MODEL}/converse", CONVERSE
        if kind == "converse-stream":
            path = f"/model/{MODEL}/converse-stream"
        elif kind == "invalid-model":
            path = "/model/no-such-model/converse"
        elif kind == "throttled":
            rule = json.dumps({"region": "us-east-1", "fault": "throttle", "probability": 1.0}).encode()
            await _exchange(protocol, state, _request("POST", "/_outcrop/chaos", rule))
        for _ in range(3):  # warm: caches filled, connections open
            await _exchange(protocol, state, _request("POST", path, body))
        with kept_garbage() as garbage:
            for _ in range(20):
                await _exchange(protocol, state, _request("POST", path, body))
        expected = {"converse": b" 200 ", "converse-stream": b" 200 ", "throttled": b" 429 ",
                    "invalid-model": b" 400 "}[kind]
        assert any(expected in w for w in transport.writes[-3:])
        return _outcrop_garbage(garbage)

    assert run() == Counter()
