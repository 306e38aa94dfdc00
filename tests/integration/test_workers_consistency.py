"""The workers of one ``outcrop serve --workers 2`` agree at once on what was changed through either.

Each call opens a new connection, so calls spread over both workers. Every worker caches what it reads
on the invocation path: an application profile's resolution, a profile's tags (metering, budgets) and
the chaos rules. A change made through one worker must hold in the other from the very next call
(``outcrop.generations``), not once its cache expires (1 s, 5 s, 250 ms): no waiting in these tests.
On SQLite and PostgreSQL.
"""

from __future__ import annotations

import http.client
import json
import re
import struct
import subprocess
import time
from collections.abc import Callable

import httpx
import sqlalchemy as sa

from outcrop.generations import SPEND
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


def _pinned(server: ServerProcess) -> tuple[http.client.HTTPConnection, http.client.HTTPConnection]:
    """Two keep-alive connections served by different workers (found with ``ss``: the server-side socket
    of each, by the client's port, and the process that holds it)."""
    by_worker: dict[str, http.client.HTTPConnection] = {}
    for _ in range(64):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", "/_outcrop/health")
        conn.getresponse().read()
        client_port = conn.sock.getsockname()[1]
        out = subprocess.run(["ss", "-Htnp", "state", "established", f"( dport = :{client_port} )"],
                             capture_output=True, text=True, check=True).stdout
        worker = re.search(r"pid=(\d+)", out)
        assert worker is not None, out
        if worker.group(1) in by_worker:
            conn.close()
            continue
        by_worker[worker.group(1)] = conn
        if len(by_worker) == 2:
            first, second = by_worker.values()
            return first, second
    raise AssertionError("64 connections all reached one worker")


def _call(conn: http.client.HTTPConnection, model_id: str) -> tuple[int, dict]:
    conn.request("POST", f"/model/{model_id}/converse", body=json.dumps({"messages": USER_HELLO}),
                 headers={"content-type": "application/json"})
    r = conn.getresponse()
    return r.status, json.loads(r.read())


def _stored(database_url: str, n: int) -> None:
    """Wait until ``n`` successful invocations are stored (a refusal is an event too)."""
    engine = sa.create_engine(database_url)
    deadline = time.monotonic() + 30
    try:
        while True:
            with engine.connect() as db:
                if db.execute(sa.text("SELECT count(*) FROM usage_events WHERE outcome = 'success'")).scalar_one() >= n:
                    return
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        engine.dispose()


def _spend_generation(server: ServerProcess) -> int:
    """The counter every ingester of the server bumps once it has stored spend against a budget."""
    return struct.unpack_from("=Q", (server.data_dir / "generations").read_bytes(), SPEND * 8)[0]


def _budget(server: ServerProcess, arn: str, tokens: int) -> None:
    r = httpx.post(f"{server.url}/tagResource", timeout=30,
                   json={"resourceARN": arn, "tags": [{"key": "outcrop:budget-tokens-daily", "value": str(tokens)}]})
    assert r.status_code == 200, r.text


def test_spend_stored_by_one_worker_counts_against_a_budget_in_the_other_at_once(
    server_factory: Callable[..., ServerProcess], database_url: str
):
    """Without waiting for the other worker's cache of stored spend (1 s) to expire: as soon as the spend is
    stored (the ingester's pace, 0.25 s)."""
    server = _two_workers(server_factory, database_url)
    arn = _profile(server)
    model_id = arn.replace("/", "%2F").replace(":", "%3A")
    a, b = _pinned(server)
    _budget(server, arn, 1)
    status, answer = _call(b, model_id)  # nothing spent yet: admitted
    assert status == 200, answer
    spent = answer["usage"]["inputTokens"] + answer["usage"]["outputTokens"]
    _stored(database_url, 1)
    status, answer = _call(a, model_id)  # worker A reads (and caches) the stored spend: over the budget
    assert (status, answer.get("message", "")[:10]) == (400, "The daily ")
    _budget(server, arn, spent + spent // 2)  # room for half a call more: the next call is admitted
    announced = _spend_generation(server)
    status, answer = _call(b, model_id)
    assert status == 200, answer
    _stored(database_url, 2)
    deadline = time.monotonic() + 30
    while _spend_generation(server) == announced:  # the ingester bumps it just after its commit
        assert time.monotonic() < deadline
        time.sleep(0.01)
    status, answer = _call(a, model_id)  # 2 calls' worth is spent: worker A must not go by what it cached
    assert status == 400, answer
    assert "is spent" in answer["message"], answer
