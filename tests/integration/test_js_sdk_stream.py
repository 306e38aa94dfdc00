"""The JS SDK v3 runtime client's streams over h2c (its default handler): ConverseStream,
InvokeModelWithResponseStream and a throttled ConverseStream, run by ``tests/js/stream.mjs``."""

from __future__ import annotations

import json
import os
import subprocess

from tests.integration.test_js_sdk import ACCESS_KEY, NODE_TIMEOUT, SECRET_KEY, js_sdk  # noqa: F401 - a fixture


def test_js_runtime_streams_over_h2c(js_sdk, server_factory):  # noqa: F811 - the fixture imported above
    server = server_factory()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
               OUTCROP_ENDPOINT=server.url)
    proc = subprocess.run(["node", "stream.mjs"], cwd=js_sdk, env=env, capture_output=True, text=True,
                          timeout=NODE_TIMEOUT)
    assert proc.returncode == 0, f"node stream.mjs exited {proc.returncode}: {proc.stderr[-3000:]}"
    results = json.loads(proc.stdout.splitlines()[-1])
    assert results["handler"] == "NodeHttp2Handler"

    stream = results["converseStream"]
    assert stream["ok"], stream
    assert stream["httpStatusCode"] == 200
    assert stream["events"][0] == "messageStart" and stream["events"][-1] == "metadata"
    assert "messageStop" in stream["events"] and stream["text"]
    assert results["usage"]["outputTokens"] > 0

    invoke = results["invokeStream"]
    assert invoke["ok"], invoke
    assert invoke["text"] == stream["text"] and invoke["chunks"] > 2

    throttled = results["throttled"]
    assert not throttled["ok"], throttled
    assert throttled["error"]["name"] == "ThrottlingException" and throttled["error"]["httpStatusCode"] == 429
