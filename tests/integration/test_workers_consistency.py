"""The workers of one ``outcrop serve --workers 2`` agree at once on what was changed through either.

Each call opens a new connection, so calls spread over both workers. Every worker caches what it reads
on the invocation path: an application profile's resolution, a profile's tags (metering, budgets) and
the chaos rules. A change made through one worker must hold in the other from the very next call
(``outcrop.generations``), not once its cache expires (1 s, 5 s, 250 ms): no waiting in these tests.
On SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.conftest import ServerProcess
from tests.integration.runtime_helpers import HAIKU, USER_HELLO

CALLS = 16
MODEL_ARN = f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}"


def _codes(server: ServerProcess, model_id: str) -> set[tuple[int, str]]:
    out = set()
    for _ in range(CALLS):  # a fresh connection per call: both workers answer some
        r = httpx.post(f"{server.url}/model/{model_id}/converse", json={"messages": USER_HELLO}, timeout=30)
        out.add((r.status_code, r.headers.get("x-amzn-errortype", "")))
    return out


def _two_workers(server_factory: Callable[..., ServerProcess], database_url: str) -> ServerProcess:
    server = server_factory(database_url, args=["--workers", "2"])
    server.wait_for_workers(2)
    return server


def _profile(server: ServerProcess) -> str:
    r = httpx.post(server.url + "/inference-profiles", timeout=30,
                   json={"inferenceProfileName": "shared", "modelSource": {"copyFrom": MODEL_ARN}})
    assert r.status_code == 201, r.text
    return r.json()["inferenceProfileArn"]


def test_a_deleted_profile_stops_resolving_in_every_worker_at_once(
    server_factory: Callable[..., ServerProcess], database_url: str
):
    server = _two_workers(server_factory, database_url)
    arn = _profile(server)
    model_id = arn.replace("/", "%2F").replace(":", "%3A")
    assert _codes(server, model_id) == {(200, "")}  # both workers have resolved (and cached) it
    assert httpx.delete(f"{server.url}/inference-profiles/{model_id}", timeout=30).status_code == 200
    assert _codes(server, model_id) == {(400, "ValidationException")}


def test_a_budget_tag_holds_in_every_worker_at_once(server_factory: Callable[..., ServerProcess], database_url: str):
    server = _two_workers(server_factory, database_url)
    arn = _profile(server)
    model_id = arn.replace("/", "%2F").replace(":", "%3A")
    assert _codes(server, model_id) == {(200, "")}  # both workers have read (and cached) its tags: none
    r = httpx.post(f"{server.url}/tagResource", timeout=30,
                   json={"resourceARN": arn, "tags": [{"key": "outcrop:budget-tokens-daily", "value": "0"}]})
    assert r.status_code == 200, r.text
    assert _codes(server, model_id) == {(400, "ServiceQuotaExceededException")}


def test_a_chaos_rule_holds_in_every_worker_at_once(server_factory: Callable[..., ServerProcess], database_url: str):
    server = _two_workers(server_factory, database_url)
    chaos = server.url + "/_outcrop/chaos"
    assert _codes(server, HAIKU) == {(200, "")}  # both workers have read (and cached) the rules: none
    rule = httpx.post(chaos, json={"region": "*", "fault": "throttle"}).json()
    assert _codes(server, HAIKU) == {(429, "ThrottlingException")}
    assert httpx.delete(f"{chaos}/{rule['id']}").status_code == 200
    assert _codes(server, HAIKU) == {(200, "")}
