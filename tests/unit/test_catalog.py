"""The shipped catalogue, as AWS lists it per source Region."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from outcrop.control.catalog import Catalog, foundation_model_arn


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def test_ships_every_profile_and_model_of_the_compiled_data(catalog):
    data = resources.files("outcrop.data")
    profiles = json.loads((data / "system_profiles.json").read_text())
    models = json.loads((data / "foundation_models.json").read_text())
    assert len(profiles) == 96 and len(models) == 65
    assert set(catalog.models) == {m["model_id"] for m in models}
    assert {p["geography"] for p in profiles} == {"us", "eu", "apac", "jp", "au", "ca", "us-gov", "global"}
    for p in profiles:
        assert p["model_id"] in catalog.models, p["id"]
        for source in p["routes"]:
            assert catalog.system_profile(source, p["id"]) is not None


def test_us_east_2_profiles_follow_the_observed_model_order(catalog):
    haiku = catalog.system_profile("us-east-2", "us.anthropic.claude-3-haiku-20240307-v1:0")
    assert [a.split(":")[3] for a in haiku.model_arns()] == ["us-east-1", "us-west-2", "us-east-2"]
    assert haiku.name == "US Anthropic Claude 3 Haiku"
    assert haiku.description == "Routes requests to Anthropic Claude 3 Haiku in us-east-1, us-west-2 and us-east-2."


def test_system_profiles_list_by_updated_at_ascending(catalog):
    listed = catalog.system_profiles_in("us-east-2")
    keys = [(p.updated_at, p.profile_id) for p in listed]
    assert keys == sorted(keys)
    assert listed[0].profile_id == "us.anthropic.claude-3-haiku-20240307-v1:0"


def test_global_profiles_list_a_region_less_arn_then_the_source_region(catalog):
    profile = catalog.system_profile("eu-west-1", "global.amazon.nova-2-lite-v1:0")
    assert profile.model_arns() == [
        "arn:aws:bedrock:::foundation-model/amazon.nova-2-lite-v1:0",
        "arn:aws:bedrock:eu-west-1::foundation-model/amazon.nova-2-lite-v1:0",
    ]
    assert profile.description.endswith("globally across all supported AWS Regions.")


def test_profiles_are_offered_only_in_their_source_regions(catalog):
    assert catalog.system_profile("eu-west-1", "us.anthropic.claude-3-haiku-20240307-v1:0") is None
    assert all(p.profile_id.split(".")[0] in ("eu", "global") for p in catalog.system_profiles_in("eu-west-1"))


def test_gov_cloud_uses_its_partition(catalog):
    profile = next(iter(catalog.system_profiles_in("us-gov-west-1")))
    assert profile.arn("123456789012").startswith("arn:aws-us-gov:bedrock:us-gov-west-1:123456789012:")
    assert foundation_model_arn("us-gov-west-1", "m.x").startswith("arn:aws-us-gov:")


def test_config_can_add_models_and_profiles():
    catalog = Catalog.load(
        extra_models=[{"model_id": "acme.local-v1:0", "provider": "Acme", "name": "Local", "regions": ["us-east-1"]}],
        extra_profiles=[{"id": "us.acme.local-v1:0", "name": "US Acme Local", "model_id": "acme.local-v1:0",
                         "routes": {"us-east-1": ["us-east-1", "us-west-2"]}}],
    )
    assert catalog.model_in("us-east-1", "acme.local-v1:0") is not None
    profile = catalog.system_profile("us-east-1", "us.acme.local-v1:0")
    assert profile is not None and profile.description == "Routes requests to Acme Local in us-east-1 and us-west-2."


def test_output_limits_come_with_their_source_and_a_config_entry_may_set_or_lift_one():
    limits = json.loads((resources.files("outcrop.data") / "output_limits.json").read_text())
    assert all(isinstance(v["max_output_tokens"], int) and v["evidence"] for v in limits.values())
    shipped = Catalog.load()
    assert shipped.models["anthropic.claude-3-haiku-20240307-v1:0"].max_output_tokens == 4096
    assert shipped.models["anthropic.claude-opus-4-1-20250805-v1:0"].max_output_tokens is None  # no trustworthy figure
    assert set(limits) <= set(shipped.models)
    changed = Catalog.load([{"model_id": "anthropic.claude-3-haiku-20240307-v1:0", "max_output_tokens": 0},
                            {"model_id": "acme.local-v1:0", "regions": ["us-east-1"], "max_output_tokens": 2000}])
    assert changed.models["anthropic.claude-3-haiku-20240307-v1:0"].max_output_tokens is None
    assert changed.models["acme.local-v1:0"].max_output_tokens == 2000
