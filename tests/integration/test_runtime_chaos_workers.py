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
# A worker re-reads the rules every 250 ms (outcrop.runtime.chaos.REFRESH_SECONDS); on a loaded machine a
# refresh may come late, so the test waits for the rule to hold everywhere, within a bound far above that.
PROPAGATION_S = 5.0


def _settled(server: ServerProcess, expected: set[tuple[int, str]]) -> set[tuple[int, str]]:
    """The codes of ``CALLS`` calls, once they are all ``expected`` (or as they are when the bound passes)."""
    deadline = time.monotonic() + PROPAGATION_S
    while True:
        codes = _converse_codes(server)
        if codes == expected or time.monotonic() > deadline:
            return codes
        time.sleep(0.05)


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
    server.wait_for_workers(2)
    chaos = server.url + "/_outcrop/chaos"
    rule = httpx.post(chaos, json={"region": "*", "fault": "throttle"}).json()
    assert _settled(server, {(429, "ThrottlingException")}) == {(429, "ThrottlingException")}
    assert {tuple(r["id"] for r in httpx.get(chaos).json()["rules"]) for _ in range(CALLS)} == {(rule["id"],)}

    assert httpx.delete(f"{chaos}/{rule['id']}").status_code == 200
    assert _settled(server, {(200, "")}) == {(200, "")}
    assert {len(httpx.get(chaos).json()["rules"]) for _ in range(CALLS)} == {0}
