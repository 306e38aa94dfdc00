"""Get/Delete by ID or ARN, what ``models`` holds, system profiles per caller, the type filter, tags and
foundation models: the control plane's behaviour beyond the decisions table, through boto3.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from ctl_helpers import (
    DB_PARAMS,
    EU_HAIKU_ID,
    GLOBAL_SONNET_45_ID,
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

NOVA_LITE = "amazon.nova-lite-v1:0"


@pytest.fixture(scope="module", params=DB_PARAMS)
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    yield from module_server(request.param, tmp_path_factory.mktemp("profiles"), pool_config())


@pytest.fixture(scope="module")
def pool(shared: Any) -> AccountPool:
    return AccountPool(shared)


@pytest.fixture
def caller(pool: AccountPool) -> Caller:
    return pool.take()


@pytest.fixture
def br(caller: Caller) -> Any:
    return caller.client("us-east-1")


def create(client: Any, copy_from: str = HAIKU_FM_USE1, **kwargs: Any) -> str:
    kwargs.setdefault("inferenceProfileName", unique_name())
    resp = client.create_inference_profile(modelSource={"copyFrom": copy_from}, **kwargs)
    assert status_of(resp) == 201
    return str(resp["inferenceProfileArn"])


def model_arns(profile: dict[str, Any]) -> list[str]:
    return [m["modelArn"] for m in profile["models"]]


def fm(region: str, model: str) -> str:
    return f"arn:aws:bedrock:{region}::foundation-model/{model}"


def capture_urls(client: Any) -> list[str]:
    urls: list[str] = []
    client.meta.events.register("before-send", lambda request, **_: urls.append(request.url))
    return urls


# ------------------------------------------------------------------------- application Get/Delete
def test_get_accepts_id_and_arn_of_application_profile(caller: Caller, br: Any) -> None:
    name = unique_name()
    arn = create(br, inferenceProfileName=name, description="for team a")
    pid = arn.rsplit("/", 1)[1]
    assert arn == f"arn:aws:bedrock:us-east-1:{caller.account}:application-inference-profile/{pid}"
    assert len(pid) == 12 and pid.isalnum() and pid == pid.lower()
    by_id = br.get_inference_profile(inferenceProfileIdentifier=pid)
    by_arn = br.get_inference_profile(inferenceProfileIdentifier=arn)
    assert status_of(by_id) == status_of(by_arn) == 200
    for got in (by_id, by_arn):
        got.pop("ResponseMetadata")
    assert by_id == by_arn
    assert by_id["inferenceProfileName"] == name
    assert by_id["description"] == "for team a"
    assert by_id["inferenceProfileArn"] == arn
    assert by_id["inferenceProfileId"] == pid
    assert (by_id["status"], by_id["type"]) == ("ACTIVE", "APPLICATION")
    assert by_id["createdAt"] == by_id["updatedAt"]
    now = dt.datetime.now(dt.UTC)
    assert abs((by_id["createdAt"] - now).total_seconds()) < 60


def test_get_omits_description_when_none_was_given(br: Any) -> None:
    got = br.get_inference_profile(inferenceProfileIdentifier=create(br))
    assert "description" not in got


def test_get_and_delete_send_arn_percent_encoded_as_one_segment(caller: Caller, br: Any) -> None:
    arn = create(br)
    urls = capture_urls(br)
    br.get_inference_profile(inferenceProfileIdentifier=arn)
    br.delete_inference_profile(inferenceProfileIdentifier=arn)
    encoded = arn.replace(":", "%3A").replace("/", "%2F")
    assert [u.split("/inference-profiles/", 1)[1] for u in urls] == [encoded, encoded]
    err = error_of(br.get_inference_profile, inferenceProfileIdentifier=arn)
    assert (err.code, err.status) == ("ResourceNotFoundException", 404)


@pytest.mark.parametrize("form", ["id", "arn", "arn-no-account", "arn-no-region"])
def test_delete_accepts_id_or_arn_of_application_profile(caller: Caller, br: Any, form: str) -> None:
    arn = create(br)
    pid = arn.rsplit("/", 1)[1]
    identifier = {
        "id": pid,
        "arn": arn,
        "arn-no-account": f"arn:aws:bedrock:us-east-1::application-inference-profile/{pid}",
        "arn-no-region": f"arn:aws:bedrock::{caller.account}:application-inference-profile/{pid}",
    }[form]
    assert status_of(br.delete_inference_profile(inferenceProfileIdentifier=identifier)) == 200
    err = error_of(br.get_inference_profile, inferenceProfileIdentifier=pid)
    assert (err.code, err.status) == ("ResourceNotFoundException", 404)


def test_get_unknown_application_profile_is_not_found(caller: Caller, br: Any) -> None:
    for identifier in ("abcdefghijkl", f"arn:aws:bedrock:us-east-1:{caller.account}:application-inference-profile/abcdefghijkl"):
        err = error_of(br.get_inference_profile, inferenceProfileIdentifier=identifier)
        assert (err.code, err.status) == ("ResourceNotFoundException", 404)


# ------------------------------------------------------------------------------ system Get/Delete
@pytest.mark.parametrize("form", ["id", "arn", "arn-no-account"])
def test_get_accepts_id_or_arn_of_system_profile(caller: Caller, br: Any, form: str) -> None:
    identifier = {
        "id": US_HAIKU_ID,
        "arn": f"arn:aws:bedrock:us-east-1:{caller.account}:inference-profile/{US_HAIKU_ID}",
        "arn-no-account": US_HAIKU_USE1,
    }[form]
    urls = capture_urls(br)
    got = br.get_inference_profile(inferenceProfileIdentifier=identifier)
    assert status_of(got) == 200
    assert "/" not in urls[0].split("/inference-profiles/", 1)[1]
    assert got["inferenceProfileId"] == US_HAIKU_ID
    assert got["type"] == "SYSTEM_DEFINED" and got["status"] == "ACTIVE"
    assert got["inferenceProfileArn"] == f"arn:aws:bedrock:us-east-1:{caller.account}:inference-profile/{US_HAIKU_ID}"
    assert model_arns(got) == [fm("us-east-1", HAIKU), fm("us-west-2", HAIKU)]


def test_system_profile_is_rendered_with_callers_account_and_region(pool: AccountPool) -> None:
    a, b = pool.take(), pool.take()
    for who in (a, b):
        for region in ("us-east-1", "us-east-2", "us-west-2"):
            got = who.client(region).get_inference_profile(inferenceProfileIdentifier=US_HAIKU_ID)
            assert got["inferenceProfileArn"] == (
                f"arn:aws:bedrock:{region}:{who.account}:inference-profile/{US_HAIKU_ID}")
            listed = [s for s in list_all(who.client(region)) if s["inferenceProfileId"] == US_HAIKU_ID]
            assert [s["inferenceProfileArn"] for s in listed] == [got["inferenceProfileArn"]]


def test_a_presigned_url_acts_in_the_account_and_region_it_is_signed_for(caller: Caller) -> None:
    # As a request signed in its Authorization header does: the scope is in X-Amz-Credential instead.
    url = f"{caller.server.url}/inference-profiles/{quote(EU_HAIKU_ID, safe='')}"
    request = AWSRequest(method="GET", url=url)
    SigV4QueryAuth(Credentials(caller.access_key, "secret"), "bedrock", "eu-west-1", 60).add_auth(request)
    got = httpx.get(request.prepare().url)
    assert got.status_code == 200, got.text
    assert got.json()["inferenceProfileArn"] == f"arn:aws:bedrock:eu-west-1:{caller.account}:inference-profile/{EU_HAIKU_ID}"


def test_system_profile_models_depend_on_source_region(caller: Caller) -> None:
    east1 = caller.client("us-east-1").get_inference_profile(inferenceProfileIdentifier=US_HAIKU_ID)
    east2 = caller.client("us-east-2").get_inference_profile(inferenceProfileIdentifier=US_HAIKU_ID)
    assert model_arns(east1) == [fm("us-east-1", HAIKU), fm("us-west-2", HAIKU)]
    assert model_arns(east2) == [fm("us-east-1", HAIKU), fm("us-west-2", HAIKU), fm("us-east-2", HAIKU)]


def test_global_profile_lists_regionless_arn_first_then_source_region(caller: Caller) -> None:
    model = GLOBAL_SONNET_45_ID.split(".", 1)[1]
    for region in ("us-east-1", "eu-west-1"):
        got = caller.client(region).get_inference_profile(inferenceProfileIdentifier=GLOBAL_SONNET_45_ID)
        assert model_arns(got) == [f"arn:aws:bedrock:::foundation-model/{model}", fm(region, model)]


def test_system_profile_not_offered_in_caller_region_is_not_found(caller: Caller) -> None:
    for region, identifier in (("us-east-1", EU_HAIKU_ID), ("eu-west-1", US_HAIKU_ID),
                               ("us-east-1", "us.acme.nothing-v1:0")):
        err = error_of(caller.client(region).get_inference_profile, inferenceProfileIdentifier=identifier)
        assert (err.code, err.status) == ("ResourceNotFoundException", 404)
    ids = {s["inferenceProfileId"] for s in list_all(caller.client("us-east-1"))}
    assert US_HAIKU_ID in ids and EU_HAIKU_ID not in ids
    ids = {s["inferenceProfileId"] for s in list_all(caller.client("eu-west-1"))}
    assert EU_HAIKU_ID in ids and US_HAIKU_ID not in ids


def test_list_summaries_equal_get_of_each_system_profile(caller: Caller) -> None:
    br = caller.client("us-east-2")
    summaries = list_all(br)
    assert summaries
    for s in summaries[:10]:
        got = br.get_inference_profile(inferenceProfileIdentifier=s["inferenceProfileId"])
        got.pop("ResponseMetadata")
        assert got == s


# ---------------------------------------------------------------------------------- app models
def test_models_of_profile_copied_from_foundation_model_is_that_model(br: Any) -> None:
    arn = create(br, copy_from=HAIKU_FM_USE1)
    assert model_arns(br.get_inference_profile(inferenceProfileIdentifier=arn)) == [HAIKU_FM_USE1]


@pytest.mark.parametrize(
    ("region", "profile_id"),
    [("us-east-1", US_HAIKU_ID), ("us-east-2", US_HAIKU_ID), ("us-east-1", f"us.{NOVA_LITE}"),
     ("us-east-1", GLOBAL_SONNET_45_ID), ("eu-west-1", EU_HAIKU_ID)],
)
def test_models_of_profile_copied_from_system_profile_are_its_models_in_order(
    caller: Caller, region: str, profile_id: str
) -> None:
    br = caller.client(region)
    system = br.get_inference_profile(inferenceProfileIdentifier=profile_id)
    arn = create(br, copy_from=f"arn:aws:bedrock:{region}::inference-profile/{profile_id}")
    assert model_arns(br.get_inference_profile(inferenceProfileIdentifier=arn)) == model_arns(system)
    assert len(model_arns(system)) >= 2


def test_nova_lite_copy_has_the_observed_region_order(br: Any) -> None:
    arn = create(br, copy_from=f"arn:aws:bedrock:us-east-1::inference-profile/us.{NOVA_LITE}")
    assert model_arns(br.get_inference_profile(inferenceProfileIdentifier=arn)) == [
        fm("us-east-1", NOVA_LITE), fm("us-west-2", NOVA_LITE), fm("us-east-2", NOVA_LITE)]


def test_copy_of_global_profile_lists_regionless_arn_first(br: Any) -> None:
    model = GLOBAL_SONNET_45_ID.split(".", 1)[1]
    arn = create(br, copy_from=f"arn:aws:bedrock:us-east-1::inference-profile/{GLOBAL_SONNET_45_ID}")
    assert model_arns(br.get_inference_profile(inferenceProfileIdentifier=arn)) == [
        f"arn:aws:bedrock:::foundation-model/{model}", fm("us-east-1", model)]


# ---------------------------------------------------------------------------------- type filter
def test_list_type_filter_defaults_to_system_defined(br: Any) -> None:
    arn = create(br)
    default = list_all(br)
    explicit = list_all(br, typeEquals="SYSTEM_DEFINED")
    assert default == explicit
    assert default and all(s["type"] == "SYSTEM_DEFINED" for s in default)
    assert arn not in {s["inferenceProfileArn"] for s in default}
    apps = list_all(br, typeEquals="APPLICATION")
    assert [s["inferenceProfileArn"] for s in apps] == [arn]
    assert apps[0]["type"] == "APPLICATION"
    got = br.get_inference_profile(inferenceProfileIdentifier=arn)
    got.pop("ResponseMetadata")
    assert apps[0] == got


def test_list_query_carries_type_and_max_results(br: Any) -> None:
    urls = capture_urls(br)
    br.list_inference_profiles(typeEquals="APPLICATION", maxResults=5)
    assert "type=APPLICATION" in urls[0] and "maxResults=5" in urls[0]


def test_non_default_project_with_application_profiles_is_validation_exception(br: Any) -> None:
    arn = create(br)
    err = error_of(br.list_inference_profiles, typeEquals="APPLICATION", projectIdentifier="proj1")
    assert (err.code, err.status) == ("ValidationException", 400)
    err = error_of(br.get_inference_profile, inferenceProfileIdentifier=arn, projectIdentifier="proj1")
    assert (err.code, err.status) == ("ValidationException", 400)
    assert br.get_inference_profile(inferenceProfileIdentifier=arn, projectIdentifier="default")["inferenceProfileArn"] == arn


# ------------------------------------------------------------------------------------------ tags
def tag_dict(client: Any, arn: str) -> dict[str, str]:
    resp = client.list_tags_for_resource(resourceARN=arn)
    assert status_of(resp) == 200
    return {t["key"]: t["value"] for t in resp["tags"]}


def test_tags_given_at_create_are_listed(br: Any) -> None:
    arn = create(br, tags=[{"key": "team", "value": "a"}, {"key": "cost center", "value": ""}])
    assert tag_dict(br, arn) == {"team": "a", "cost center": ""}


def test_tag_untag_list_round_trip_with_overwrite(br: Any) -> None:
    arn = create(br)
    assert tag_dict(br, arn) == {}
    assert status_of(br.tag_resource(resourceARN=arn, tags=[{"key": "a", "value": "1"}, {"key": "b", "value": "2"}])) == 200
    assert tag_dict(br, arn) == {"a": "1", "b": "2"}
    br.tag_resource(resourceARN=arn, tags=[{"key": "a", "value": "changed"}, {"key": "A", "value": "upper"}])
    assert tag_dict(br, arn) == {"a": "changed", "b": "2", "A": "upper"}
    assert status_of(br.untag_resource(resourceARN=arn, tagKeys=["b", "not-there"])) == 200
    assert tag_dict(br, arn) == {"a": "changed", "A": "upper"}
    br.untag_resource(resourceARN=arn, tagKeys=["a", "A"])
    assert tag_dict(br, arn) == {}


def test_tags_of_one_profile_do_not_leak_to_another(br: Any) -> None:
    one, two = create(br, tags=[{"key": "k", "value": "1"}]), create(br, tags=[{"key": "k", "value": "2"}])
    br.untag_resource(resourceARN=one, tagKeys=["k"])
    assert tag_dict(br, one) == {} and tag_dict(br, two) == {"k": "2"}


def test_tags_accept_arn_without_account(br: Any) -> None:
    arn = create(br)
    pid = arn.rsplit("/", 1)[1]
    short = f"arn:aws:bedrock:us-east-1::application-inference-profile/{pid}"
    br.tag_resource(resourceARN=short, tags=[{"key": "k", "value": "v"}])
    assert tag_dict(br, arn) == {"k": "v"}


def test_tag_operations_on_unknown_profile_are_not_found(caller: Caller, br: Any) -> None:
    arn = f"arn:aws:bedrock:us-east-1:{caller.account}:application-inference-profile/zzzzzzzzzzzz"
    for call, kwargs in ((br.tag_resource, {"tags": [{"key": "x", "value": "y"}]}),
                         (br.untag_resource, {"tagKeys": ["x"]}), (br.list_tags_for_resource, {})):
        err = error_of(call, resourceARN=arn, **kwargs)
        assert (err.code, err.status) == ("ResourceNotFoundException", 404)


def test_duplicate_tag_keys_in_one_request_are_validation_exception(br: Any) -> None:
    arn = create(br)
    err = error_of(br.tag_resource, resourceARN=arn, tags=[{"key": "k", "value": "1"}, {"key": "k", "value": "2"}])
    assert (err.code, err.status) == ("ValidationException", 400)
    assert tag_dict(br, arn) == {}


# ------------------------------------------------------------------------------ foundation models
def test_list_foundation_models_lists_the_callers_region(caller: Caller) -> None:
    east = caller.client("us-east-1").list_foundation_models()
    assert status_of(east) == 200
    ids = [m["modelId"] for m in east["modelSummaries"]]
    assert HAIKU in ids
    assert len(ids) == len(set(ids)) > 20
    assert all(m["modelArn"] == fm("us-east-1", m["modelId"]) for m in east["modelSummaries"])
    west_ids = {m["modelId"] for m in caller.client("us-west-2").list_foundation_models()["modelSummaries"]}
    assert "meta.llama3-1-405b-instruct-v1:0" in west_ids
    assert "meta.llama3-1-405b-instruct-v1:0" not in ids


def test_list_foundation_models_filters(caller: Caller) -> None:
    br = caller.client("us-east-1")
    everything = br.list_foundation_models()["modelSummaries"]
    anthropic = br.list_foundation_models(byProvider="Anthropic")["modelSummaries"]
    assert anthropic and all(m["providerName"] == "Anthropic" for m in anthropic)
    assert len(anthropic) == sum(m["providerName"] == "Anthropic" for m in everything)
    assert br.list_foundation_models(byProvider="anthropic")["modelSummaries"] == anthropic
    embedding = br.list_foundation_models(byOutputModality="EMBEDDING")["modelSummaries"]
    assert embedding and all("EMBEDDING" in m["outputModalities"] for m in embedding)
    assert len(embedding) == sum("EMBEDDING" in m["outputModalities"] for m in everything)
    on_demand = br.list_foundation_models(byInferenceType="ON_DEMAND")["modelSummaries"]
    assert on_demand and all("ON_DEMAND" in m["inferenceTypesSupported"] for m in on_demand)
    assert len(on_demand) < len(everything)  # profile-only models drop out
    assert br.list_foundation_models(byCustomizationType="FINE_TUNING")["modelSummaries"] == []
    both = br.list_foundation_models(byProvider="Anthropic", byInferenceType="ON_DEMAND")["modelSummaries"]
    assert {m["modelId"] for m in both} == {m["modelId"] for m in anthropic} & {m["modelId"] for m in on_demand}
    assert br.list_foundation_models(byProvider="Nobody")["modelSummaries"] == []


def test_get_foundation_model_by_id_or_arn(caller: Caller) -> None:
    br = caller.client("us-east-1")
    by_id = br.get_foundation_model(modelIdentifier=HAIKU)
    by_arn = br.get_foundation_model(modelIdentifier=HAIKU_FM_USE1)
    assert status_of(by_id) == status_of(by_arn) == 200
    assert by_id["modelDetails"] == by_arn["modelDetails"]
    details = by_id["modelDetails"]
    assert (details["modelId"], details["modelArn"], details["providerName"]) == (HAIKU, HAIKU_FM_USE1, "Anthropic")
    listed = {m["modelId"]: m for m in br.list_foundation_models()["modelSummaries"]}
    assert listed[HAIKU] == details
    west = caller.client("us-west-2").get_foundation_model(modelIdentifier=HAIKU)["modelDetails"]
    assert west["modelArn"] == fm("us-west-2", HAIKU)


def test_get_foundation_model_not_offered_in_caller_region_is_an_error(caller: Caller) -> None:
    br = caller.client("us-east-1")
    for identifier in ("meta.llama3-1-405b-instruct-v1:0", fm("us-west-2", HAIKU), "acme.nothing-v1:0"):
        err = error_of(br.get_foundation_model, modelIdentifier=identifier)
        assert 400 <= err.status < 500 and err.code in ("ValidationException", "ResourceNotFoundException")
