"""Every row of the decisions table in ``shared/spec/README.md``, against a real server, through boto3.

Most tests share one server per database (module scope) and act as an account of their own; the tests
that need their own server (quota configuration, restarts) use the function-scoped fixtures.
"""

from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt
import uuid
from typing import Any

import pytest
from ctl_helpers import (
    DB_PARAMS,
    EU_HAIKU_ID,
    HAIKU,
    HAIKU_FM_USE1,
    US_HAIKU_ID,
    US_HAIKU_USE1,
    AccountPool,
    Caller,
    error_of,
    list_all,
    module_server,
    pool_config,
    status_of,
    unique_name,
)

COPY_FROM_MESSAGE = "copyFrom must be a valid inference profile model source ARN."


@pytest.fixture(scope="module", params=DB_PARAMS)
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    yield from module_server(request.param, tmp_path_factory.mktemp("decisions"), pool_config())


@pytest.fixture(scope="module")
def pool(shared: Any) -> AccountPool:
    return AccountPool(shared)


@pytest.fixture
def caller(pool: AccountPool) -> Caller:
    return pool.take()


@pytest.fixture
def br(caller: Caller) -> Any:
    return caller.client("us-east-1")


def create(client: Any, name: str | None = None, copy_from: str = HAIKU_FM_USE1, **kwargs: Any) -> str:
    resp = client.create_inference_profile(
        inferenceProfileName=name or unique_name(), modelSource={"copyFrom": copy_from}, **kwargs
    )
    assert status_of(resp) == 201
    assert resp["status"] == "ACTIVE"
    return str(resp["inferenceProfileArn"])


def app_ids(client: Any) -> list[str]:
    return [s["inferenceProfileId"] for s in list_all(client, typeEquals="APPLICATION")]


# ---------------------------------------------------------------------------------------- names
def test_duplicate_name_in_same_account_and_region_is_conflict_400(br: Any) -> None:
    name = unique_name()
    create(br, name)
    err = error_of(br.create_inference_profile, inferenceProfileName=name,
                   modelSource={"copyFrom": US_HAIKU_USE1})
    assert (err.code, err.status) == ("ConflictException", 400)
    assert len(app_ids(br)) == 1


def test_same_name_is_free_in_another_account_and_region(pool: AccountPool) -> None:
    a, b = pool.take(), pool.take()
    name = unique_name()
    create(a.client("us-east-1"), name)
    create(b.client("us-east-1"), name)
    create(a.client("us-west-2"), name, copy_from=f"arn:aws:bedrock:us-west-2::foundation-model/{HAIKU}")


# ---------------------------------------------------------------------------------- idempotency
def test_same_token_same_params_returns_same_arn_201_and_creates_nothing(br: Any) -> None:
    token = uuid.uuid4().hex
    kwargs = {"inferenceProfileName": unique_name(), "modelSource": {"copyFrom": HAIKU_FM_USE1},
              "description": "first", "tags": [{"key": "team", "value": "a"}], "clientRequestToken": token}
    first = br.create_inference_profile(**kwargs)
    second = br.create_inference_profile(**kwargs)
    assert status_of(first) == status_of(second) == 201
    assert second["inferenceProfileArn"] == first["inferenceProfileArn"]
    assert second["status"] == "ACTIVE"
    assert app_ids(br) == [first["inferenceProfileArn"].rsplit("/", 1)[1]]


def test_same_token_with_tags_in_other_order_is_a_replay(br: Any) -> None:
    token = uuid.uuid4().hex
    name = unique_name()
    tags = [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]
    first = create(br, name, clientRequestToken=token, tags=tags)
    again = create(br, name, clientRequestToken=token, tags=list(reversed(tags)))
    assert again == first


@pytest.mark.parametrize(
    "change",
    [
        {"inferenceProfileName": "other-name"},
        {"description": "changed"},
        {"modelSource": {"copyFrom": US_HAIKU_USE1}},
        {"tags": [{"key": "team", "value": "b"}]},
    ],
    ids=["name", "description", "copyFrom", "tags"],
)
def test_same_token_different_params_is_conflict_400(br: Any, change: dict[str, Any]) -> None:
    token = uuid.uuid4().hex
    kwargs = {"inferenceProfileName": unique_name(), "modelSource": {"copyFrom": HAIKU_FM_USE1},
              "description": "first", "tags": [{"key": "team", "value": "a"}], "clientRequestToken": token}
    assert status_of(br.create_inference_profile(**kwargs)) == 201
    err = error_of(br.create_inference_profile, **{**kwargs, **change})
    assert (err.code, err.status) == ("ConflictException", 400)
    assert len(app_ids(br)) == 1


def test_token_is_scoped_to_account_and_region(pool: AccountPool) -> None:
    a, b = pool.take(), pool.take()
    token = uuid.uuid4().hex
    arn_a = create(a.client(), unique_name(), clientRequestToken=token)
    arn_b = create(b.client(), unique_name(), clientRequestToken=token)
    assert arn_a != arn_b
    assert a.account in arn_a and b.account in arn_b


def test_token_is_remembered_across_restart(server: Any) -> None:
    br = server.client("bedrock")
    token = uuid.uuid4().hex
    name = unique_name()
    arn = create(br, name, clientRequestToken=token)
    server.restart()
    br = server.client("bedrock")
    again = br.create_inference_profile(inferenceProfileName=name, modelSource={"copyFrom": HAIKU_FM_USE1},
                                        clientRequestToken=token)
    assert status_of(again) == 201
    assert again["inferenceProfileArn"] == arn
    err = error_of(br.create_inference_profile, inferenceProfileName=unique_name(),
                   modelSource={"copyFrom": HAIKU_FM_USE1}, clientRequestToken=token)
    assert (err.code, err.status) == ("ConflictException", 400)
    assert len(list_all(br, typeEquals="APPLICATION")) == 1


def test_token_is_remembered_after_the_profile_is_deleted(br: Any) -> None:
    """A replay never silently creates a second profile for one token."""
    token = uuid.uuid4().hex
    name = unique_name()
    arn = create(br, name, clientRequestToken=token)
    br.delete_inference_profile(inferenceProfileIdentifier=arn)
    again = br.create_inference_profile(inferenceProfileName=name, modelSource={"copyFrom": HAIKU_FM_USE1},
                                        clientRequestToken=token)
    assert again["inferenceProfileArn"] == arn
    assert app_ids(br) == []


# ------------------------------------------------------------------------------------ copyFrom
@pytest.mark.parametrize(
    "copy_from",
    [
        # a foundation model of another Region
        f"arn:aws:bedrock:us-west-2::foundation-model/{HAIKU}",
        # a model not offered in us-east-1 at all
        "arn:aws:bedrock:us-east-1::foundation-model/meta.llama3-1-405b-instruct-v1:0",
        # a model that does not exist
        "arn:aws:bedrock:us-east-1::foundation-model/acme.nothing-v1:0",
        # the right model, in another partition
        f"arn:aws-cn:bedrock:cn-north-1::foundation-model/{HAIKU}",
    ],
    ids=["other-region", "not-offered-here", "unknown", "other-partition"],
)
def test_copy_from_model_not_offered_in_caller_region_is_model_not_found(br: Any, copy_from: str) -> None:
    err = error_of(br.create_inference_profile, inferenceProfileName=unique_name(),
                   modelSource={"copyFrom": copy_from})
    assert (err.code, err.status, err.message) == ("ResourceNotFoundException", 404, "Model not found")
    assert app_ids(br) == []


@pytest.mark.parametrize(
    "copy_from",
    [
        f"arn:aws:bedrock:us-east-1::inference-profile/{EU_HAIKU_ID}",
        f"arn:aws:bedrock:eu-west-1::inference-profile/{EU_HAIKU_ID}",
        f"arn:aws:bedrock:us-west-2::inference-profile/{US_HAIKU_ID}",
        "arn:aws:bedrock:us-east-1::inference-profile/us.acme.nothing-v1:0",
        f"arn:aws-us-gov:bedrock:us-gov-west-1::inference-profile/us-gov.{HAIKU}",
    ],
    ids=["other-geography", "other-geography-arn-region", "other-region", "unknown", "other-partition"],
)
def test_copy_from_system_profile_not_offered_in_caller_region_is_profile_not_found(
    br: Any, copy_from: str
) -> None:
    err = error_of(br.create_inference_profile, inferenceProfileName=unique_name(),
                   modelSource={"copyFrom": copy_from})
    assert (err.code, err.status, err.message) == (
        "ResourceNotFoundException", 404, "Inference profile not found")


def test_copy_from_system_profile_of_another_account_is_profile_not_found(caller: Caller) -> None:
    br = caller.client()
    err = error_of(br.create_inference_profile, inferenceProfileName=unique_name(),
                   modelSource={"copyFrom": f"arn:aws:bedrock:us-east-1:999999999999:inference-profile/{US_HAIKU_ID}"})
    assert (err.code, err.status, err.message) == (
        "ResourceNotFoundException", 404, "Inference profile not found")
    own = f"arn:aws:bedrock:us-east-1:{caller.account}:inference-profile/{US_HAIKU_ID}"
    create(br, copy_from=own)


def test_copy_from_application_profile_is_validation_exception(br: Any) -> None:
    arn = create(br)
    err = error_of(br.create_inference_profile, inferenceProfileName=unique_name(),
                   modelSource={"copyFrom": arn})
    assert (err.code, err.status, err.message) == ("ValidationException", 400, COPY_FROM_MESSAGE)
    assert len(app_ids(br)) == 1


@pytest.mark.parametrize(
    "copy_from",
    [
        "not-an-arn",
        HAIKU,
        US_HAIKU_ID,
        "arn:aws:s3:::my-bucket/key",
        "arn:aws:bedrock:us-east-1::foundation-model/",
        "arn:aws:bedrock:us-east-1:12345:foundation-model/x",
        "arn:aws:bedrock:us-east-1::custom-model/abc",
        " " + HAIKU_FM_USE1,
        HAIKU_FM_USE1 + "/extra",
    ],
)
def test_copy_from_malformed_is_validation_exception_with_exact_message(caller: Caller, copy_from: str) -> None:
    br = caller.client(validate=False)
    err = error_of(br.create_inference_profile, inferenceProfileName=unique_name(),
                   modelSource={"copyFrom": copy_from})
    assert (err.code, err.status, err.message) == ("ValidationException", 400, COPY_FROM_MESSAGE)


def test_copy_from_foundation_model_arn_with_an_account_is_validation_exception(caller: Caller) -> None:
    # Bedrock's answer to a foundation-model ARN carrying the caller's account (awslabs/aws-solutions-constructs
    # #1387, whose fix #1390 drops the account); a model belongs to no account, another's no more than one's own.
    br = caller.client()
    for account in (caller.account, "999999999999"):
        err = error_of(br.create_inference_profile, inferenceProfileName=unique_name(),
                       modelSource={"copyFrom": f"arn:aws:bedrock:us-east-1:{account}:foundation-model/{HAIKU}"})
        assert (err.code, err.status, err.message) == ("ValidationException", 400, COPY_FROM_MESSAGE)
    assert app_ids(br) == []


def test_copy_from_accepts_account_less_and_own_account_arns(caller: Caller) -> None:
    br = caller.client()
    create(br, copy_from=US_HAIKU_USE1)
    create(br, copy_from=f"arn:aws:bedrock:us-east-1:{caller.account}:inference-profile/{US_HAIKU_ID}")
    create(br, copy_from=HAIKU_FM_USE1)


# ------------------------------------------------------------------------ system-defined profiles
@pytest.mark.parametrize("form", ["id", "arn", "arn-no-account"])
def test_delete_system_profile_is_validation_exception(caller: Caller, form: str) -> None:
    br = caller.client()
    identifier = {
        "id": US_HAIKU_ID,
        "arn": f"arn:aws:bedrock:us-east-1:{caller.account}:inference-profile/{US_HAIKU_ID}",
        "arn-no-account": US_HAIKU_USE1,
    }[form]
    err = error_of(br.delete_inference_profile, inferenceProfileIdentifier=identifier)
    assert (err.code, err.status) == ("ValidationException", 400)
    assert status_of(br.get_inference_profile(inferenceProfileIdentifier=US_HAIKU_ID)) == 200


def test_tag_and_untag_system_profile_is_validation_exception(caller: Caller) -> None:
    br = caller.client()
    arn = f"arn:aws:bedrock:us-east-1:{caller.account}:inference-profile/{US_HAIKU_ID}"
    err = error_of(br.tag_resource, resourceARN=arn, tags=[{"key": "k", "value": "v"}])
    assert (err.code, err.status) == ("ValidationException", 400)
    err = error_of(br.untag_resource, resourceARN=arn, tagKeys=["k"])
    assert (err.code, err.status) == ("ValidationException", 400)


# ------------------------------------------------------------------------------------------ tags
@pytest.mark.parametrize("key", ["aws:cost-center", "aws:", "AWS:team", "Aws:x"])
def test_aws_prefixed_tag_key_is_validation_exception(br: Any, key: str) -> None:
    err = error_of(br.create_inference_profile, inferenceProfileName=unique_name(),
                   modelSource={"copyFrom": HAIKU_FM_USE1}, tags=[{"key": key, "value": "v"}])
    assert (err.code, err.status) == ("ValidationException", 400)
    assert app_ids(br) == []
    arn = create(br)
    err = error_of(br.tag_resource, resourceARN=arn, tags=[{"key": "ok", "value": "v"}, {"key": key, "value": "v"}])
    assert (err.code, err.status) == ("ValidationException", 400)
    assert br.list_tags_for_resource(resourceARN=arn)["tags"] == []


def test_aws_in_the_middle_of_a_tag_key_is_allowed(br: Any) -> None:
    arn = create(br, tags=[{"key": "my-aws:key", "value": "v"}])
    assert br.list_tags_for_resource(resourceARN=arn)["tags"] == [{"key": "my-aws:key", "value": "v"}]


def _tags(n: int, prefix: str = "k") -> list[dict[str, str]]:
    return [{"key": f"{prefix}{i}", "value": str(i)} for i in range(n)]


def test_more_than_50_tags_counting_existing_is_too_many_tags(br: Any) -> None:
    arn = create(br, tags=_tags(30))
    err = error_of(br.tag_resource, resourceARN=arn, tags=_tags(21, "new"))
    assert (err.code, err.status) == ("TooManyTagsException", 400)
    assert len(br.list_tags_for_resource(resourceARN=arn)["tags"]) == 30
    assert status_of(br.tag_resource(resourceARN=arn, tags=_tags(20, "new"))) == 200
    assert len(br.list_tags_for_resource(resourceARN=arn)["tags"]) == 50
    # Overwriting keys the profile already has adds nothing: still allowed at the limit.
    assert status_of(br.tag_resource(resourceARN=arn, tags=[{"key": "k0", "value": "changed"}])) == 200
    err = error_of(br.tag_resource, resourceARN=arn, tags=[{"key": "one-more", "value": "x"}])
    assert (err.code, err.status) == ("TooManyTagsException", 400)
    tags = {t["key"]: t["value"] for t in br.list_tags_for_resource(resourceARN=arn)["tags"]}
    assert len(tags) == 50 and tags["k0"] == "changed"


def test_create_with_51_tags_is_too_many_tags_and_creates_nothing(br: Any) -> None:
    err = error_of(br.create_inference_profile, inferenceProfileName=unique_name(),
                   modelSource={"copyFrom": HAIKU_FM_USE1}, tags=_tags(51))
    assert (err.code, err.status) == ("TooManyTagsException", 400)
    assert app_ids(br) == []
    create(br, tags=_tags(50))


# ----------------------------------------------------------------------------------------- quota
def test_quota_exceeded_is_service_quota_exceeded_400(server_factory: Any, database_url: str) -> None:
    srv = server_factory(database_url, config='application_profile_quota = 3\n[accounts]\nAKIDOTHER = "210987654321"\n')
    br = srv.client()
    arns = [create(br, f"q{i}", clientRequestToken=f"tok{i}") for i in range(3)]
    err = error_of(br.create_inference_profile, inferenceProfileName="q3", modelSource={"copyFrom": HAIKU_FM_USE1})
    assert (err.code, err.status) == ("ServiceQuotaExceededException", 400)
    # A replay of an earlier request is not a new profile: it still answers, at the quota.
    again = br.create_inference_profile(inferenceProfileName="q0", modelSource={"copyFrom": HAIKU_FM_USE1},
                                        clientRequestToken="tok0")
    assert (status_of(again), again["inferenceProfileArn"]) == (201, arns[0])
    # The quota is per account and per Region.
    create(srv.client(access_key="AKIDOTHER"), "q3")
    create(srv.client(region="us-west-2"), "q3", copy_from=f"arn:aws:bedrock:us-west-2::foundation-model/{HAIKU}")
    # Deleting frees a slot; failed creates do not use one.
    br.delete_inference_profile(inferenceProfileIdentifier=arns[0])
    err = error_of(br.create_inference_profile, inferenceProfileName="q1", modelSource={"copyFrom": HAIKU_FM_USE1})
    assert err.code == "ConflictException"
    create(br, "q4")
    err = error_of(br.create_inference_profile, inferenceProfileName="q5", modelSource={"copyFrom": HAIKU_FM_USE1})
    assert (err.code, err.status) == ("ServiceQuotaExceededException", 400)
    assert len(list_all(br, typeEquals="APPLICATION")) == 3


# ------------------------------------------------------------------------------------- nextToken
@pytest.mark.parametrize(
    "token",
    ["garbage", "eyJhIjoxfQ.AAAA", "a.b.c", "W10.AAAAAAAAAAAAAAAAAAAAAA", "%%%%", "...."],
)
def test_next_token_not_issued_by_outcrop_is_validation_exception(br: Any, token: str) -> None:
    for kind in ("SYSTEM_DEFINED", "APPLICATION"):
        err = error_of(br.list_inference_profiles, typeEquals=kind, nextToken=token)
        assert (err.code, err.status) == ("ValidationException", 400)


def test_tampered_next_token_is_validation_exception(br: Any) -> None:
    token = br.list_inference_profiles(maxResults=2)["nextToken"]
    _payload, mac = token.split(".")
    forged = base64.urlsafe_b64encode(b'[0,"a"]').rstrip(b"=").decode() + "." + mac
    err = error_of(br.list_inference_profiles, nextToken=forged)
    assert (err.code, err.status) == ("ValidationException", 400)


def test_next_token_issued_for_another_filter_is_validation_exception(br: Any) -> None:
    for i in range(3):
        create(br, f"f{i}")
    app_token = br.list_inference_profiles(typeEquals="APPLICATION", maxResults=1)["nextToken"]
    sys_token = br.list_inference_profiles(typeEquals="SYSTEM_DEFINED", maxResults=1)["nextToken"]
    for kwargs in ({"nextToken": app_token}, {"typeEquals": "SYSTEM_DEFINED", "nextToken": app_token},
                   {"typeEquals": "APPLICATION", "nextToken": sys_token}):
        err = error_of(br.list_inference_profiles, **kwargs)
        assert (err.code, err.status) == ("ValidationException", 400)
    # Each token still works with its own filter.
    assert br.list_inference_profiles(typeEquals="APPLICATION", nextToken=app_token)["inferenceProfileSummaries"]
    assert br.list_inference_profiles(nextToken=sys_token)["inferenceProfileSummaries"]


def test_next_token_of_another_account_or_region_is_validation_exception(pool: AccountPool) -> None:
    a, b = pool.take(), pool.take()
    token = a.client().list_inference_profiles(maxResults=1)["nextToken"]
    for client in (b.client("us-east-1"), a.client("us-east-2")):
        err = error_of(client.list_inference_profiles, nextToken=token)
        assert (err.code, err.status) == ("ValidationException", 400)


# ------------------------------------------------------------------------------------ page size
def test_default_page_size_is_100_with_next_token_when_more_remain(br: Any) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: create(br, f"page-{i:03d}"), range(100)))
    page = br.list_inference_profiles(typeEquals="APPLICATION")
    assert len(page["inferenceProfileSummaries"]) == 100
    assert "nextToken" not in page
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: create(br, f"page-{i:03d}"), range(100, 105)))
    page = br.list_inference_profiles(typeEquals="APPLICATION")
    assert status_of(page) == 200
    assert len(page["inferenceProfileSummaries"]) == 100
    rest = br.list_inference_profiles(typeEquals="APPLICATION", nextToken=page["nextToken"])
    assert len(rest["inferenceProfileSummaries"]) == 5
    assert "nextToken" not in rest
    names = [s["inferenceProfileName"] for s in page["inferenceProfileSummaries"] + rest["inferenceProfileSummaries"]]
    assert sorted(names) == [f"page-{i:03d}" for i in range(105)]


def test_system_profiles_page_through_every_profile_once(br: Any) -> None:
    everything = br.list_inference_profiles(maxResults=1000)
    assert "nextToken" not in everything
    full = [s["inferenceProfileId"] for s in everything["inferenceProfileSummaries"]]
    assert len(full) > 10
    paged = [s["inferenceProfileId"] for s in list_all(br, maxResults=7)]
    assert paged == full
    first = br.list_inference_profiles(maxResults=7)
    assert len(first["inferenceProfileSummaries"]) == 7 and first["nextToken"]


# ---------------------------------------------------------------------------------------- order
def _ts(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def test_system_profiles_are_listed_by_updated_at_ascending(caller: Caller) -> None:
    for region in ("us-east-1", "us-east-2", "eu-west-1"):
        summaries = list_all(caller.client(region), maxResults=5)
        assert summaries, region
        keys = [_ts(s["updatedAt"]) for s in summaries]
        assert keys == sorted(keys), region
        assert all(s["type"] == "SYSTEM_DEFINED" for s in summaries)
        assert len({s["inferenceProfileId"] for s in summaries}) == len(summaries)


def test_application_profiles_are_listed_by_created_at_then_id(br: Any) -> None:
    created = [create(br, f"order-{i:02d}").rsplit("/", 1)[1] for i in range(12)]
    summaries = list_all(br, typeEquals="APPLICATION", maxResults=5)
    assert [s["inferenceProfileId"] for s in summaries] == created
    keys = [(_ts(s["createdAt"]), s["inferenceProfileId"]) for s in summaries]
    assert keys == sorted(keys)
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: create(br, f"burst-{i:02d}"), range(24)))
    summaries = list_all(br, typeEquals="APPLICATION", maxResults=4)
    keys = [(_ts(s["createdAt"]), s["inferenceProfileId"]) for s in summaries]
    assert keys == sorted(keys)
    assert len(set(keys)) == 36


# ---------------------------------------------------------------------------------------- delete
def test_delete_is_synchronous(br: Any) -> None:
    arn = create(br, tags=[{"key": "k", "value": "v"}])
    resp = br.delete_inference_profile(inferenceProfileIdentifier=arn)
    assert status_of(resp) == 200
    err = error_of(br.get_inference_profile, inferenceProfileIdentifier=arn)
    assert (err.code, err.status) == ("ResourceNotFoundException", 404)
    assert app_ids(br) == []
    err = error_of(br.list_tags_for_resource, resourceARN=arn)
    assert (err.code, err.status) == ("ResourceNotFoundException", 404)
    err = error_of(br.delete_inference_profile, inferenceProfileIdentifier=arn)
    assert (err.code, err.status) == ("ResourceNotFoundException", 404)


# ------------------------------------------------------------------------------------ visibility
def test_profiles_of_another_account_are_invisible(pool: AccountPool) -> None:
    owner, other = pool.take(), pool.take()
    arn = create(owner.client(), tags=[{"key": "k", "value": "v"}])
    pid = arn.rsplit("/", 1)[1]
    br = other.client()
    for identifier in (arn, pid):
        err = error_of(br.get_inference_profile, inferenceProfileIdentifier=identifier)
        assert (err.code, err.status) == ("ResourceNotFoundException", 404)
        err = error_of(br.delete_inference_profile, inferenceProfileIdentifier=identifier)
        assert (err.code, err.status) == ("ResourceNotFoundException", 404)
    for call, kwargs in ((br.tag_resource, {"tags": [{"key": "x", "value": "y"}]}),
                         (br.untag_resource, {"tagKeys": ["k"]}), (br.list_tags_for_resource, {})):
        err = error_of(call, resourceARN=arn, **kwargs)
        assert (err.code, err.status) == ("ResourceNotFoundException", 404)
    assert app_ids(br) == []
    # The owner's profile is untouched by all of that.
    mine = owner.client()
    assert mine.get_inference_profile(inferenceProfileIdentifier=pid)["inferenceProfileArn"] == arn
    assert mine.list_tags_for_resource(resourceARN=arn)["tags"] == [{"key": "k", "value": "v"}]


def test_profiles_of_another_region_are_invisible(caller: Caller) -> None:
    arn = create(caller.client("us-east-1"))
    pid = arn.rsplit("/", 1)[1]
    west = caller.client("us-west-2")
    for identifier in (arn, pid, arn.replace("us-east-1", "us-west-2")):
        err = error_of(west.get_inference_profile, inferenceProfileIdentifier=identifier)
        assert (err.code, err.status) == ("ResourceNotFoundException", 404)
        err = error_of(west.delete_inference_profile, inferenceProfileIdentifier=identifier)
        assert (err.code, err.status) == ("ResourceNotFoundException", 404)
    err = error_of(west.list_tags_for_resource, resourceARN=arn)
    assert (err.code, err.status) == ("ResourceNotFoundException", 404)
    assert list_all(west, typeEquals="APPLICATION") == []
    # An ARN naming us-west-2, sent to us-east-1, names nothing there either.
    east = caller.client("us-east-1")
    err = error_of(east.get_inference_profile, inferenceProfileIdentifier=arn.replace("us-east-1", "us-west-2"))
    assert (err.code, err.status) == ("ResourceNotFoundException", 404)
    assert east.get_inference_profile(inferenceProfileIdentifier=arn)["inferenceProfileId"] == pid
