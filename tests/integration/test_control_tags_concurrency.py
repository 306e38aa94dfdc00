"""Tag writes to one profile from two server processes on one PostgreSQL database run one after another:
the same key set at once by both is no 500, and the tag limit holds (each test failed before its fix)."""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ServerProcess, fresh_pg_database, pg_skip_reason
from tests.integration.ctl_helpers import HAIKU_FM_USE1, status_of


@pytest.fixture
def pg_pair(server_factory: Any) -> tuple[ServerProcess, ServerProcess]:
    reason = pg_skip_reason()
    if reason:
        pytest.skip(reason)
    url = fresh_pg_database()
    return server_factory(url), server_factory(url)


def race(servers: tuple[ServerProcess, ...], n: int, fn: Any) -> list[tuple[int, str]]:
    clients = [servers[i % len(servers)].client() for i in range(n)]
    barrier = threading.Barrier(n)

    def one(i: int) -> tuple[int, str]:
        barrier.wait()
        try:
            return status_of(fn(clients[i], i)), ""
        except ClientError as e:
            return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]

    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        return list(ex.map(one, range(n)))


@pytest.mark.postgres
def test_two_processes_tagging_the_same_key_at_once_all_succeed(pg_pair: tuple[ServerProcess, ServerProcess]) -> None:
    arn = pg_pair[0].client().create_inference_profile(
        inferenceProfileName="tag-race", modelSource={"copyFrom": HAIKU_FM_USE1})["inferenceProfileArn"]
    for round_ in range(5):
        outcomes = race(pg_pair, 16, lambda c, i, r=round_: c.tag_resource(
            resourceARN=arn, tags=[{"key": f"k{r}", "value": f"v{i}"}]))
        assert outcomes == [(200, "")] * 16, outcomes
    tags = pg_pair[1].client().list_tags_for_resource(resourceARN=arn)["tags"]
    assert sorted(t["key"] for t in tags) == [f"k{r}" for r in range(5)]


@pytest.mark.postgres
def test_two_processes_tagging_at_once_never_exceed_the_tag_limit(pg_pair: tuple[ServerProcess, ServerProcess]) -> None:
    arn = pg_pair[0].client().create_inference_profile(
        inferenceProfileName="tag-limit-race", modelSource={"copyFrom": HAIKU_FM_USE1})["inferenceProfileArn"]
    # Each request adds 10 distinct keys; at most 5 of the 12 can fit in 50.
    outcomes = race(pg_pair, 12, lambda c, i: c.tag_resource(
        resourceARN=arn, tags=[{"key": f"r{i}-{j}", "value": "v"} for j in range(10)]))
    ok = sum(1 for s, _ in outcomes if s == 200)
    assert all(c in ("", "TooManyTagsException") for _, c in outcomes), outcomes
    tags = pg_pair[1].client().list_tags_for_resource(resourceARN=arn)["tags"]
    assert len(tags) == 10 * ok
    assert len(tags) <= 50, len(tags)
