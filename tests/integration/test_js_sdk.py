"""The AWS SDK for JavaScript v3 (pinned 3.1164.0, ``tests/js``) against a real ``outcrop serve``.

``tests/js/smoke.mjs`` runs the control-plane operations with ``BedrockClient`` (HTTP/1.1) and a
Converse with ``BedrockRuntimeClient`` left on its default handler, ``NodeHttp2Handler``: h2c with
prior knowledge. It prints one JSON document; the assertions are here. The dependencies are installed
with ``npm ci`` from the committed lock file the first time; without node, npm or registry access the
tests are skipped, saying why.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).resolve().parents[1] / "js"
SDK_VERSION = "3.1164.0"
ACCESS_KEY = "AKIDEXAMPLE"  # the same static test credentials as tests/conftest.py
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
HAIKU_MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
NODE_TIMEOUT = 90  # seconds; smoke.mjs bounds each step at 15 s and its own exit at 5 s

# Signs that npm could not reach the registry (as opposed to a broken lock file, which must fail).
NETWORK_FAILURE = re.compile(
    r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|"
    r"network|request to \S+ failed|getaddrinfo|proxy|certificate|self.signed|UNABLE_TO_",
    re.IGNORECASE,
)
AWS_EXCEPTION_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*(Exception|Error|Fault)$")
NOT_AWS_NAMES = {"Error", "TypeError", "RangeError", "SyntaxError", "AbortError", "TimeoutError", "SmokeTimeout"}


def _installed_version(package: str) -> str | None:
    manifest = JS_DIR / "node_modules" / "@aws-sdk" / package / "package.json"
    try:
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def _deps_present() -> bool:
    return all(_installed_version(p) == SDK_VERSION for p in ("client-bedrock", "client-bedrock-runtime"))


@pytest.fixture(scope="session")
def js_sdk() -> Path:
    """``tests/js`` with its pinned dependencies installed; skips when node/npm/registry are missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(f"node and npm are needed for the JS SDK tests (node={node}, npm={npm})")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    match = re.match(r"v(\d+)\.", version)
    if match is None or int(match.group(1)) < 20:
        pytest.skip(f"the pinned @aws-sdk {SDK_VERSION} needs node >= 20, found {version or 'unknown'}")
    # One installer at a time (pytest-xdist workers share tests/js/node_modules).
    lock_path = Path(tempfile.gettempdir()) / f"outcrop-npm-ci-{os.getuid()}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _deps_present():
            proc = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=JS_DIR, capture_output=True, text=True, timeout=600,
            )
            output = (proc.stdout + proc.stderr)[-2000:]
            if proc.returncode != 0:
                if NETWORK_FAILURE.search(output):
                    pytest.skip(f"npm ci could not reach the npm registry, so the JS SDK is not installed: {output}")
                pytest.fail(f"npm ci failed in {JS_DIR} (exit {proc.returncode}): {output}")
            if not _deps_present():
                pytest.fail(f"npm ci succeeded but @aws-sdk/*@{SDK_VERSION} is not in {JS_DIR / 'node_modules'}")
    return JS_DIR


def run_smoke(js_dir: Path, endpoint: str, *, endpoint_in_option: bool, prefix: str) -> dict[str, Any]:
    """Run smoke.mjs; the endpoint is given either as AWS_ENDPOINT_URL or as the client's ``endpoint``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        SMOKE_PREFIX=prefix,
    )
    env.pop("OUTCROP_ENDPOINT", None)
    if endpoint_in_option:
        env["OUTCROP_ENDPOINT"] = endpoint
    else:
        env["AWS_ENDPOINT_URL"] = endpoint
    try:
        proc = subprocess.run(
            ["node", "smoke.mjs"], cwd=js_dir, env=env, capture_output=True, text=True, timeout=NODE_TIMEOUT
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"node smoke.mjs did not finish within {NODE_TIMEOUT} s; stdout: {e.stdout!r}")
    assert proc.returncode == 0, f"node smoke.mjs exited {proc.returncode}: {proc.stderr[-3000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"smoke.mjs printed nothing; stderr: {proc.stderr[-3000:]}"
    return json.loads(lines[-1])


def ok(results: dict[str, Any], step: str) -> dict[str, Any]:
    entry = results[step]
    assert entry["ok"], f"{step} failed: {entry.get('error')}"
    return entry


def test_js_bedrock_client_create_paginate_get_by_arn_tag_delete(js_sdk, server_factory):
    url = server_factory().url
    results = run_smoke(js_sdk, url, endpoint_in_option=False, prefix="js-env")
    assert results["endpointFrom"] == "AWS_ENDPOINT_URL"
    assert results["handlers"]["bedrock"] == "NodeHttpHandler"

    arns = ok(results, "create")["arns"]
    assert len(arns) == 3
    assert all(a.startswith("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/") for a in arns)

    # paginateListInferenceProfiles with pageSize 2 over 3 application profiles: two pages, 2 + 1.
    pages = ok(results, "paginate")
    assert pages["pageSizes"] == [2, 1]
    assert sorted(p["arn"] for p in pages["profiles"]) == sorted(arns)
    assert {p["type"] for p in pages["profiles"]} == {"APPLICATION"}
    assert sorted(p["name"] for p in pages["profiles"]) == ["js-env-0", "js-env-1", "js-env-2"]

    got = ok(results, "get")
    assert got["inferenceProfileArn"] == arns[0]
    assert got["inferenceProfileId"] == arns[0].rsplit("/", 1)[1]
    assert got["inferenceProfileName"] == "js-env-0"
    assert got["description"] == "created by the JS smoke test"
    assert (got["type"], got["status"]) == ("APPLICATION", "ACTIVE")
    assert got["createdAtIsDate"], got["createdAt"]
    assert got["models"] == [
        f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU_MODEL_ID}",
        f"arn:aws:bedrock:us-west-2::foundation-model/{HAIKU_MODEL_ID}",
    ]

    assert ok(results, "tag")["tags"] == {"team": "js", "env": "smoke"}
    assert ok(results, "delete")["deleted"] == 3

    gone = results["getDeleted"]
    assert not gone["ok"], gone
    assert gone["error"]["name"] == "ResourceNotFoundException", gone["error"]
    assert gone["error"]["httpStatusCode"] == 404
    assert gone["error"]["awsShaped"]


def test_js_runtime_client_default_h2c_handler_converse_gets_an_aws_answer_not_a_protocol_error(
    js_sdk, server_factory
):
    url = server_factory().url
    results = run_smoke(js_sdk, url, endpoint_in_option=True, prefix="js-opt")
    assert results["endpointFrom"] == "option"
    assert results["handlers"]["runtime"] == "NodeHttp2Handler"  # the SDK default, left alone
    ok(results, "create")
    ok(results, "get")

    converse = results["converse"]
    if converse["ok"]:
        assert converse["httpStatusCode"] == 200
        assert converse["role"] == "assistant"
        assert converse["stopReason"]
        assert isinstance(converse["usage"], dict)
    else:
        # Until the runtime exists the server may refuse, but over HTTP/2 and in AWS's error shape:
        # not ERR_HTTP2_ERROR, a socket error, a timeout or a TypeError from a malformed reply.
        error = converse["error"]
        assert error["awsShaped"], error
        assert error["name"] not in NOT_AWS_NAMES, error
        assert not str(error.get("code") or "").startswith("ERR_"), error
        assert AWS_EXCEPTION_NAME.match(error["name"] or ""), error
        assert 400 <= error["httpStatusCode"] < 600, error
        assert error["message"], error
        assert error["requestId"], error
    # The profile is deleted afterwards and node exited by itself after client.destroy().
    assert ok(results, "delete")["deleted"] == 3
