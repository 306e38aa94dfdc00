"""Metering end to end: invocations through two tagged application profiles, a system profile and a bare
model; streams, an abandoned stream, throttles, model failures and budget refusals. Every figure must be
exact and the same in the raw events, the rollups, ``GET /_outcrop/usage`` and ``outcrop usage``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.conftest import ServerProcess

ACCOUNT = "123456789012"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
US_HAIKU = "us." + HAIKU
MICRO = "amazon.nova-micro-v1:0"
SLOW = "meta.llama3-8b-instruct-v1:0"
# pUSD per token (input, output) in us-east-1, from spec §11.
PRICE = {HAIKU: (250_000, 1_250_000), MICRO: (35_000, 140_000)}
CONFIG = f"""
[[deployments]]
model = "{SLOW}"
tokens_per_second = 5
"""
USER = [{"role": "user", "content": [{"text": "Tell me about rocks"}]}]


class Tally:
    """What the test expects, per profile ARN (None: direct calls)."""

    def __init__(self) -> None:
        self.groups: dict[str | None, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def ok(self, profile: str | None, model: str, inp: int, out: int) -> None:
        g = self.groups[profile]
        g["invocations"] += 1
        g["inputTokens"] += inp
        g["outputTokens"] += out
        g["cost"] += inp * PRICE[model][0] + out * PRICE[model][1]

    def failed(self, profile: str | None, kind: str) -> None:
        g = self.groups[profile]
        g[kind] += 1
        if kind != "throttles":
            g["invocations"] += 1


def converse(rt: Any, tally: Tally, model_id: str, profile: str | None, model: str) -> None:
    r = rt.converse(modelId=model_id, messages=USER)
    tally.ok(profile, model, r["usage"]["inputTokens"], r["usage"]["outputTokens"])


def converse_stream(rt: Any, tally: Tally, model_id: str, profile: str | None, model: str) -> None:
    usage = None
    for event in rt.converse_stream(modelId=model_id, messages=USER)["stream"]:
        if "metadata" in event:
            usage = event["metadata"]["usage"]
    assert usage is not None
    tally.ok(profile, model, usage["inputTokens"], usage["outputTokens"])


def usage(server: ServerProcess, **params: Any) -> dict[str, Any]:
    r = httpx.get(server.url + "/_outcrop/usage", params=params, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def cli(server: ServerProcess, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "outcrop", "usage", "--database", server.database_url, "--format", "json", *args],
        capture_output=True, text=True, check=True, timeout=60,
    )
    return json.loads(out.stdout)


@pytest.fixture
def metered(server_factory: Any, database_url: str) -> ServerProcess:
    return server_factory(database_url, config=CONFIG)


def test_usage_is_exact_and_equal_in_events_rollups_http_and_cli(metered: ServerProcess) -> None:
    server = metered
    bedrock, rt = server.client("bedrock"), server.client("bedrock-runtime")
    red = bedrock.create_inference_profile(
        inferenceProfileName="red", modelSource={"copyFrom": f"arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/{US_HAIKU}"},
        tags=[{"key": "team", "value": "red"}],
    )["inferenceProfileArn"]
    blue = bedrock.create_inference_profile(
        inferenceProfileName="blue", modelSource={"copyFrom": f"arn:aws:bedrock:us-east-1::foundation-model/{MICRO}"},
        tags=[{"key": "team", "value": "blue"}, {"key": "env", "value": "prod"}],
    )["inferenceProfileArn"]
    system = f"arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/{US_HAIKU}"
    tally = Tally()

    for _ in range(3):
        converse(rt, tally, red, red, HAIKU)
    for _ in range(2):
        converse(rt, tally, blue, blue, MICRO)
    converse_stream(rt, tally, blue, blue, MICRO)
    converse(rt, tally, US_HAIKU, system, HAIKU)
    converse_stream(rt, tally, US_HAIKU, system, HAIKU)
    r = rt.invoke_model(modelId=HAIKU, body=json.dumps({
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}))
    tally.ok(None, HAIKU, int(r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-input-token-count"]),
             int(r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-output-token-count"]))
    converse(rt, tally, MICRO, None, MICRO)

    # Throttles and model failures, on the bare model in every Region (no failover can hide them).
    for fault, code, kind in (("throttle", "ThrottlingException", "throttles"), ("error", "ModelErrorException", "serverErrors")):
        rule = httpx.post(server.url + "/_outcrop/chaos", json={"region": "*", "model": MICRO, "fault": fault}).json()
        with pytest.raises(ClientError) as e:
            rt.converse(modelId=MICRO, messages=USER)
        assert e.value.response["Error"]["Code"] == code
        # botocore may retry a throttle on its own: every attempt is an invocation with its event.
        for _ in range(e.value.response["ResponseMetadata"].get("RetryAttempts", 0) + 1):
            tally.failed(None, kind)
        httpx.delete(server.url + f"/_outcrop/chaos/{rule['id']}")

    # Budgets: spent → refused (a client error, naming the budget); raised → admitted again.
    bedrock.tag_resource(resourceARN=red, tags=[{"key": "outcrop:budget-usd-daily", "value": "0.000001"}])
    with pytest.raises(ClientError) as e:
        rt.converse(modelId=red, messages=USER)
    assert e.value.response["Error"]["Code"] == "ServiceQuotaExceededException"
    assert "outcrop:budget-usd-daily" in e.value.response["Error"]["Message"]
    tally.failed(red, "clientErrors")
    bedrock.tag_resource(resourceARN=red, tags=[{"key": "outcrop:budget-usd-daily", "value": "100"}])
    converse(rt, tally, red, red, HAIKU)
    bedrock.tag_resource(resourceARN=blue, tags=[{"key": "outcrop:budget-tokens-monthly", "value": "10"}])
    with pytest.raises(ClientError) as e:
        rt.converse(modelId=blue, messages=USER)
    assert "outcrop:budget-tokens-monthly" in e.value.response["Error"]["Message"]
    tally.failed(blue, "clientErrors")
    bedrock.untag_resource(resourceARN=blue, tagKeys=["outcrop:budget-tokens-monthly"])
    converse(rt, tally, blue, blue, MICRO)

    # A stream the client abandons (a slow deployment, so it is still running when the client leaves).
    with httpx.stream("POST", server.url + f"/model/{SLOW}/converse-stream", json={"messages": USER}) as s:
        assert s.status_code == 200
        next(s.iter_bytes())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        slow = [r for r in usage(server, groupBy="model")["rows"] if r["model"] == SLOW]
        if slow:
            break
        time.sleep(0.2)
    assert slow and slow[0]["clientErrors"] == 1 and slow[0]["invocations"] == 1

    report = usage(server, groupBy="profile")
    rows = {r["profile"]: r for r in report["rows"]}
    for profile, want in tally.groups.items():
        got = rows[profile]
        # Direct calls also hold the abandoned stream of SLOW: compare them without it.
        extra = slow[0] if profile is None else {}
        assert got["invocations"] - extra.get("invocations", 0) == want["invocations"], profile
        assert got["inputTokens"] - extra.get("inputTokens", 0) == want["inputTokens"], profile
        assert got["outputTokens"] - extra.get("outputTokens", 0) == want["outputTokens"], profile
        assert got["throttles"] == want["throttles"], profile
        assert got["serverErrors"] == want["serverErrors"], profile
        assert got["clientErrors"] - extra.get("clientErrors", 0) == want["clientErrors"], profile
        assert round((got["costUsd"] - extra.get("costUsd", 0)) * 1e12) == want["cost"], profile

    # The same report from the raw events, per day and per tag, over HTTP and from the CLI.
    for params in ({"groupBy": "profile"}, {"groupBy": ["tag:team", "model"], "granularity": "day"},
                   {"groupBy": ["tag:env", "region", "identity"], "granularity": "month"}):
        from_rollups = usage(server, **params)
        assert usage(server, **params, source="events")["rows"] == from_rollups["rows"]
        group_by = params["groupBy"] if isinstance(params["groupBy"], list) else [params["groupBy"]]
        args = [a for g in group_by for a in ("--group-by", g)]
        if "granularity" in params:
            args += ["--granularity", params["granularity"]]
        from_cli = cli(server, *args)
        assert from_cli["rows"] == from_rollups["rows"] and from_cli["totals"] == from_rollups["totals"]

    teams = {r["tag:team"]: r for r in usage(server, groupBy="tag:team")["rows"]}
    assert teams["red"]["invocations"] == tally.groups[red]["invocations"]
    assert teams["blue"]["invocations"] == tally.groups[blue]["invocations"]
    assert teams[None]["invocations"] == (tally.groups[system]["invocations"] + tally.groups[None]["invocations"]
                                           + slow[0]["invocations"])

    metrics = httpx.get(server.url + "/metrics").text
    blue_id = blue.rsplit("/", 1)[1]
    assert f'outcrop_invocations_total{{model_id="{blue_id}",region="us-east-1"}} {tally.groups[blue]["invocations"]}.0' in metrics
    assert f'outcrop_invocation_throttles_total{{model_id="{MICRO}",region="us-east-1"}} {tally.groups[None]["throttles"]}.0' in metrics
    assert "outcrop_time_to_first_token_seconds_bucket" in metrics


def test_bad_usage_queries_are_validation_errors(server: ServerProcess) -> None:
    for params in ({"granularity": "week"}, {"groupBy": "colour"}, {"since": "yesterday"},
                   {"since": "2026-02-01", "until": "2026-01-01"}):
        r = httpx.get(server.url + "/_outcrop/usage", params=params)
        assert r.status_code == 400 and r.json()["__type"] == "ValidationException", params


def test_usage_grouped_by_request_metadata(server: ServerProcess) -> None:
    """Converse and ConverseStream calls' requestMetadata is kept with their usage, and a report groups by
    one of its keys (over HTTP and in the CLI); calls without that key form the null group."""
    rt = server.client("bedrock-runtime")
    expected: dict[str | None, list[int]] = defaultdict(lambda: [0, 0])  # invocations, output tokens
    for tenant in ("acme", "acme", "globex", None):
        metadata = {"tenant": tenant, "job": "nightly"} if tenant else {"job": "nightly"}
        r = rt.converse(modelId=MICRO, messages=USER, requestMetadata=metadata)
        expected[tenant][0] += 1
        expected[tenant][1] += r["usage"]["outputTokens"]
    events = rt.converse_stream(modelId=MICRO, messages=USER, requestMetadata={"tenant": "globex"})["stream"]
    usage = next(e["metadata"]["usage"] for e in events if "metadata" in e)
    expected["globex"][0] += 1
    expected["globex"][1] += usage["outputTokens"]
    rt.converse(modelId=MICRO, messages=USER)  # no requestMetadata at all
    expected[None][0] += 1

    report = httpx.get(server.url + "/_outcrop/usage", params={"groupBy": "metadata:tenant"}).json()
    got = {row["metadata:tenant"]: [row["invocations"], row["outputTokens"]] for row in report["rows"]}
    assert got[None][0] == expected[None][0]
    assert {k: v for k, v in got.items() if k is not None} == {k: v for k, v in expected.items() if k is not None}
    assert report["totals"]["invocations"] == 6

    cli = subprocess.run(
        [sys.executable, "-m", "outcrop", "costs", "--group-by", "metadata:tenant", "--format", "json",
         "--database", server.database_url], capture_output=True, text=True, check=True)
    assert {row["metadata:tenant"] for row in json.loads(cli.stdout)["rows"]} == {"acme", "globex", None}


def test_the_cli_report_refuses_a_database_it_cannot_use_instead_of_inventing_one(tmp_path):
    """Before: a mistyped SQLite path created (and migrated) an empty database and reported $0; a URL of
    no known kind or an unreachable PostgreSQL printed a traceback; --account abc was taken."""
    missing = tmp_path / "nowhere" / "outcrop.db"
    cases = [
        (["--database", f"sqlite:///{missing}"], "does not exist"),
        (["--database", "foo://bar"], "database_url must be sqlite:///PATH or postgresql://"),
        (["--database", "mysql://u:secret@db/x"], "database_url must be sqlite:///PATH or postgresql://"),
        (["--database", "postgresql://u:secret@127.0.0.1:1/x"], "cannot be used"),
        (["--account", "abc", "--database", f"sqlite:///{missing}"], "not a 12-digit account ID"),
    ]
    for argv, said in cases:
        cli = subprocess.run([sys.executable, "-m", "outcrop", "costs", *argv], capture_output=True, text=True)
        assert cli.returncode == 2, cli.stderr
        assert said in cli.stderr and "Traceback" not in cli.stderr
        assert "secret" not in cli.stderr
    assert not missing.parent.exists()
