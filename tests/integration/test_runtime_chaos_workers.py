"""Chaos rules are shared by every server process: ``outcrop serve --workers 2``, on SQLite and PostgreSQL.

Each call opens a new connection, so calls are spread over both workers; every one of them must obey a
rule set through any worker, and stop obeying it soon after it is removed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tests.conftest import ServerProcess
from tests.integration.runtime_helpers import HAIKU, USER_HELLO

CALLS = 16
# A worker re-reads the rules at most every 250 ms (outcrop.runtime.chaos.REFRESH_SECONDS).
PROPAGATION_S = 0.35


def _converse_codes(server: ServerProcess) -> set[tuple[int, str]]:
    out = set()
    for _ in range(CALLS):  # a fresh connection per call
        r = httpx.post(f"{server.url}/model/{HAIKU}/converse", json={"messages": USER_HELLO}, timeout=30)
        out.add((r.status_code, r.headers.get("x-amzn-errortype", "")))
    return out


def test_rule_set_through_one_worker_is_applied_by_every_worker(
    server_factory: Callable[..., ServerProcess], database_url: str
):
    server = server_factory(database_url, args=["--workers", "2"])
    chaos = server.url + "/_outcrop/chaos"
    rule = httpx.post(chaos, json={"region": "*", "fault": "throttle"}).json()
    time.sleep(PROPAGATION_S)
    assert _converse_codes(server) == {(429, "ThrottlingException")}
    assert {tuple(r["id"] for r in httpx.get(chaos).json()["rules"]) for _ in range(CALLS)} == {(rule["id"],)}

    assert httpx.delete(f"{chaos}/{rule['id']}").status_code == 200
    time.sleep(PROPAGATION_S)
    assert _converse_codes(server) == {(200, "")}
    assert {len(httpx.get(chaos).json()["rules"]) for _ in range(CALLS)} == {0}
