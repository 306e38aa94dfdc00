"""Pagination under concurrent writes, durability across restarts and ``kill -9``, and two server
processes sharing one PostgreSQL database.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
from ctl_helpers import HAIKU_FM_USE1, US_HAIKU_USE1, error_of, list_all, status_of

from tests.conftest import ServerProcess, fresh_pg_database, pg_skip_reason

WORKERS = 16


def create(client: Any, name: str, **kwargs: Any) -> str:
    resp = client.create_inference_profile(inferenceProfileName=name, modelSource={"copyFrom": HAIKU_FM_USE1}, **kwargs)
    assert status_of(resp) == 201
    return str(resp["inferenceProfileArn"])


def create_many(server: ServerProcess, names: list[str], workers: int = WORKERS) -> list[str]:
    """Create profiles concurrently, one boto3 client per thread; ARNs in the order of ``names``."""
    local = threading.local()

    def one(name: str) -> str:
        if not hasattr(local, "client"):
            local.client = server.client()
        return create(local.client, name)

    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        return list(ex.map(one, names))


def pid_of(arn: str) -> str:
    return arn.rsplit("/", 1)[1]


# ---------------------------------------------------------------------------------------- paging
@pytest.mark.slow
def test_paging_2500_profiles_during_concurrent_creates_and_deletes_skips_and_repeats_nothing(
    server_factory: Callable[..., ServerProcess], database_url: str
) -> None:
    server = server_factory(database_url, config="application_profile_quota = 10000\n")
    stable = create_many(server, [f"stable-{i:04d}" for i in range(2000)])
    doomed = create_many(server, [f"doomed-{i:04d}" for i in range(500)])
    stop = threading.Event()
    created_during: list[str] = []
    deleted: list[str] = []
    errors: list[BaseException] = []

    def churn(k: int) -> None:
        client = server.client()
        i = 0
        try:
            while not stop.is_set():
                created_during.append(create(client, f"new-{k}-{i}"))
                victim = doomed[(k * 1000 + i) % len(doomed)]
                try:
                    client.delete_inference_profile(inferenceProfileIdentifier=victim)
                    deleted.append(victim)
                except ClientError as e:
                    if e.response["Error"]["Code"] != "ResourceNotFoundException":
                        raise
                i += 1
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=churn, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        pager = server.client()
        seen: list[str] = []
        keys: list[tuple[Any, str]] = []
        token = None
        pages = 0
        while True:
            kwargs = {"typeEquals": "APPLICATION", "maxResults": 100}
            if token:
                kwargs["nextToken"] = token
            page = pager.list_inference_profiles(**kwargs)
            assert status_of(page) == 200
            pages += 1
            for s in page["inferenceProfileSummaries"]:
                seen.append(s["inferenceProfileId"])
                keys.append((s["createdAt"], s["inferenceProfileId"]))
            token = page.get("nextToken")
            if not token:
                break
            time.sleep(0.002)  # let the writers interleave with the pages
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert created_during and deleted, "the churn did not overlap the paging"
    assert pages >= 2500 // 100
    assert len(seen) == len(set(seen)), "a profile was listed twice"
    missing = {pid_of(a) for a in stable} - set(seen)
    assert not missing, f"{len(missing)} profiles that existed throughout were skipped"
    assert keys == sorted(keys), "pages are not in createdAt, ID order"
    # Every profile listed existed at some point: stable, doomed, or created during the paging.
    known = {pid_of(a) for a in stable + doomed + created_during}
    assert set(seen) <= known


# ------------------------------------------------------------------------------------ durability
def test_restart_keeps_profiles_tags_and_descriptions(server: ServerProcess) -> None:
    br = server.client()
    arns = [create(br, f"keep-{i}", description=f"number {i}", tags=[{"key": "i", "value": str(i)}])
            for i in range(5)]
    arns.append(br.create_inference_profile(
        inferenceProfileName="from-system", modelSource={"copyFrom": US_HAIKU_USE1})["inferenceProfileArn"])
    br.delete_inference_profile(inferenceProfileIdentifier=arns[0])
    before = list_all(br, typeEquals="APPLICATION")
    tags_before = {a: br.list_tags_for_resource(resourceARN=a)["tags"] for a in arns[1:]}
    page_token = br.list_inference_profiles(typeEquals="APPLICATION", maxResults=2)["nextToken"]
    server.restart()
    br = server.client()
    assert list_all(br, typeEquals="APPLICATION") == before
    assert {a: br.list_tags_for_resource(resourceARN=a)["tags"] for a in arns[1:]} == tags_before
    err = error_of(br.get_inference_profile, inferenceProfileIdentifier=arns[0])
    assert err.code == "ResourceNotFoundException"
    # A page token issued before the restart still works after it.
    rest = br.list_inference_profiles(typeEquals="APPLICATION", maxResults=2, nextToken=page_token)
    assert [s["inferenceProfileArn"] for s in rest["inferenceProfileSummaries"]] == [
        s["inferenceProfileArn"] for s in before[2:4]]


CONNECTION_ERRORS = (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError)


def test_kill_9_under_load_loses_no_acknowledged_create(server: ServerProcess) -> None:
    acked: list[tuple[str, str, str]] = []  # (name, token, arn) of every 201
    lock = threading.Lock()
    stop = threading.Event()
    unexpected: list[BaseException] = []

    def writer(k: int) -> None:
        client = server.client()
        i = 0
        while not stop.is_set():
            name, token = f"w{k}-{i}", uuid.uuid4().hex
            try:
                arn = create(client, name, clientRequestToken=token, tags=[{"key": "w", "value": str(k)}])
            except CONNECTION_ERRORS:
                return
            except BaseException as e:
                unexpected.append(e)
                return
            with lock:
                acked.append((name, token, arn))
            i += 1

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill9()
    stop.set()
    for t in threads:
        t.join()
    assert not unexpected, unexpected
    assert len(acked) >= 300
    server.start()
    br = server.client()
    listed = {s["inferenceProfileArn"]: s for s in list_all(br, typeEquals="APPLICATION", maxResults=1000)}
    lost = [arn for _, _, arn in acked if arn not in listed]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged creates were lost"
    for name, token, arn in acked[:: max(len(acked) // 40, 1)]:
        got = br.get_inference_profile(inferenceProfileIdentifier=arn)
        assert got["inferenceProfileName"] == name
        assert br.list_tags_for_resource(resourceARN=arn)["tags"] == [{"key": "w", "value": name[1:].split("-")[0]}]
        # The token came through the crash too: a retry answers with the same profile.
        again = br.create_inference_profile(inferenceProfileName=name, modelSource={"copyFrom": HAIKU_FM_USE1},
                                            clientRequestToken=token, tags=[{"key": "w", "value": name[1:].split("-")[0]}])
        assert (status_of(again), again["inferenceProfileArn"]) == (201, arn)


# --------------------------------------------------------------------- two processes, one database
@pytest.fixture
def pg_pair(server_factory: Callable[..., ServerProcess]) -> tuple[ServerProcess, ServerProcess]:
    reason = pg_skip_reason()
    if reason:
        pytest.skip(reason)
    url = fresh_pg_database()
    config = "application_profile_quota = 2\n"
    return server_factory(url, config=config), server_factory(url, config=config)


def race(servers: tuple[ServerProcess, ...], n: int, fn: Callable[[Any], Any]) -> list[tuple[int, str, Any]]:
    """Run ``fn(client)`` ``n`` times at once, alternating servers; (status, error code, response) each."""
    clients = [servers[i % len(servers)].client() for i in range(n)]
    barrier = threading.Barrier(n)

    def one(client: Any) -> tuple[int, str, Any]:
        barrier.wait()
        try:
            resp = fn(client)
        except ClientError as e:
            return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"], e.response
        return status_of(resp), "", resp

    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        return list(ex.map(one, clients))


@pytest.mark.postgres
def test_two_processes_creating_the_same_name_give_one_201_and_conflicts(pg_pair: tuple[ServerProcess, ServerProcess]) -> None:
    for round_ in range(3):
        name = f"race-{round_}"
        outcomes = race(pg_pair, 12, lambda c, name=name: c.create_inference_profile(
            inferenceProfileName=name, modelSource={"copyFrom": HAIKU_FM_USE1}))
        statuses = sorted((s, c) for s, c, _ in outcomes)
        assert statuses == [(201, "")] + [(400, "ConflictException")] * 11, statuses
        profiles = list_all(pg_pair[0].client(), typeEquals="APPLICATION")
        assert [p["inferenceProfileName"] for p in profiles] == [name]
        pg_pair[1].client().delete_inference_profile(inferenceProfileIdentifier=profiles[0]["inferenceProfileArn"])


@pytest.mark.postgres
def test_two_processes_replaying_one_token_create_one_profile(pg_pair: tuple[ServerProcess, ServerProcess]) -> None:
    for round_ in range(3):
        token = uuid.uuid4().hex
        outcomes = race(pg_pair, 12, lambda c, token=token, r=round_: c.create_inference_profile(
            inferenceProfileName=f"token-race-{r}", modelSource={"copyFrom": HAIKU_FM_USE1},
            clientRequestToken=token))
        assert [s for s, _, _ in outcomes] == [201] * 12, [(s, c) for s, c, _ in outcomes]
        arns = {r["inferenceProfileArn"] for _, _, r in outcomes}
        assert len(arns) == 1
        profiles = list_all(pg_pair[1].client(), typeEquals="APPLICATION")
        assert [p["inferenceProfileArn"] for p in profiles] == list(arns)
        # Replays must not use up the quota (2): one more distinct profile still fits, then the quota holds.
        extra = create(pg_pair[0].client(), f"extra-{round_}")
        err = error_of(pg_pair[1].client().create_inference_profile, inferenceProfileName=f"over-{round_}",
                       modelSource={"copyFrom": HAIKU_FM_USE1})
        assert (err.code, err.status) == ("ServiceQuotaExceededException", 400)
        for arn in (*arns, extra):
            pg_pair[round_ % 2].client().delete_inference_profile(inferenceProfileIdentifier=arn)
