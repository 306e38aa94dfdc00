"""langchain-aws ChatBedrockConverse with an application-profile ARN, invoke and stream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ACCESS_KEY, SECRET_KEY, ServerProcess
from tests.integration.runtime_helpers import HAIKU, HAIKU_PROFILE_ARN, server_for_module

langchain_aws = pytest.importorskip("langchain_aws")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from server_for_module(tmp_path_factory.mktemp("langchain"))


@pytest.fixture(scope="module")
def app_arn(server: ServerProcess) -> str:
    return server.client("bedrock").create_inference_profile(
        inferenceProfileName="langchain-app", modelSource={"copyFrom": HAIKU_PROFILE_ARN})["inferenceProfileArn"]


def _chat(server: ServerProcess, arn: str, **kwargs: Any) -> Any:
    return langchain_aws.ChatBedrockConverse(
        model=arn, provider="anthropic", region_name="us-east-1", endpoint_url=server.url,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, **{"max_tokens": 64, **kwargs})


@pytest.mark.parametrize("base_model", [None, HAIKU], ids=["profile-lookup", "base-model"])
def test_invoke_and_stream_with_an_application_profile(server, app_arn, base_model):
    kwargs = {"base_model": base_model} if base_model else {}
    chat = _chat(server, app_arn, **kwargs)
    reply = chat.invoke("Hello there")
    assert isinstance(reply.content, str) and reply.content
    assert reply.usage_metadata["input_tokens"] == 2
    streamed = ""
    for chunk in chat.stream("Hello there"):
        content = chunk.content
        if isinstance(content, list):
            content = "".join(c.get("text", "") for c in content if isinstance(c, dict))
        streamed += content
    assert streamed == reply.content


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_structured_output_parses_into_the_callers_pydantic_model(server, app_arn, method):
    """``with_structured_output``: natively (outputConfig) and through a forced tool call, the builtin
    model's answer is valid for a pydantic model with nested, optional and constrained fields."""
    from pydantic import BaseModel, Field

    class Stop(BaseModel):
        name: str
        nights: int = Field(ge=1, le=3)

    class Trip(BaseModel):
        city: str
        stops: list[Stop] = Field(min_length=2)
        budget: float | None = None

    chat = _chat(server, app_arn, base_model=HAIKU, max_tokens=512)
    trip = chat.with_structured_output(Trip, method=method).invoke("Plan a trip to Lisbon")
    assert isinstance(trip, Trip) and len(trip.stops) >= 2 and all(1 <= s.nights <= 3 for s in trip.stops)
