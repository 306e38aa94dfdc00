"""The load generator: wrk with a Lua script per operation, one JSON summary line per run.

wrk runs closed-loop (each connection sends its next request when the previous answer arrives), one
thread, ``c`` keep-alive connections. Its own CPU use is measured from the kernel's accounting of the
wrk process (``os.wait4``), so a table can show that it was never the bottleneck.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

COPY_FROM = "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-express-v1"


def authorization(region: str) -> str:
    """A SigV4-looking header: outcrop and ministack take the account/Region (ministack: the service) from it."""
    return (
        f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/{region}/bedrock/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=0"
    )


_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,' ..
    '"max_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def _lua_str(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal for this ASCII text


def get_script(region: str, ids: list[str]) -> str:
    """GetInferenceProfile of a random one of ``ids`` per request."""
    id_list = ", ".join(_lua_str(i) for i in ids)
    return f"""
local ids = {{{id_list}}}
local headers = {{["Authorization"] = {_lua_str(authorization(region))}}}
function init(args)
  math.randomseed(os.time())
end
function request()
  return wrk.format("GET", "/inference-profiles/" .. ids[math.random(#ids)], headers)
end
{_DONE}"""


def signed_get_script(requests: list[tuple[str, dict[str, str]]]) -> str:
    """GETs of pre-signed requests, one of ``requests`` (path, headers) at random each time.

    SigV4 has no nonce: a request signed once verifies again for as long as its ``X-Amz-Date`` is within
    the server's 5-minute skew, so every request pays the full verification.
    """
    rows = ", ".join(
        "{" + _lua_str(path) + ", {" + ", ".join(f"[{_lua_str(k)}] = {_lua_str(v)}" for k, v in headers.items()) + "}}"
        for path, headers in requests
    )
    return f"""
local reqs = {{{rows}}}
function init(args)
  math.randomseed(os.time())
end
function request()
  local r = reqs[math.random(#reqs)]
  return wrk.format("GET", r[1], r[2])
end
{_DONE}"""


def path_script(region: str, path: str) -> str:
    """A GET of one fixed path (ListInferenceProfiles with a fixed query)."""
    return f"""
local headers = {{["Authorization"] = {_lua_str(authorization(region))}}}
local req = nil
function request()
  if req == nil then req = wrk.format("GET", {_lua_str(path)}, headers) end
  return req
end
{_DONE}"""


def create_script(region: str, nonce: str, copy_from: str = COPY_FROM) -> str:
    """CreateInferenceProfile with a unique name per request (run nonce + thread + counter + random).

    No ``clientRequestToken`` is sent: a fixed token would turn every request after the first into an
    idempotent replay.
    """
    return f"""
local headers = {{["Authorization"] = {_lua_str(authorization(region))}, ["Content-Type"] = "application/json"}}
local nthreads = 0
local counter = 0
local prefix = "x"
function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
end
function init(args)
  math.randomseed(os.time() + (tid or 0) * 7919)
  prefix = {_lua_str(nonce)} .. "t" .. tostring(tid or 0)
end
function request()
  counter = counter + 1
  local name = prefix .. "-" .. counter .. "-" .. math.random(1, 999999)
  local body = '{{"inferenceProfileName":"' .. name .. '","modelSource":{{"copyFrom":"{copy_from}"}}}}'
  return wrk.format("POST", "/inference-profiles", headers, body)
end
{_DONE}"""


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    errors: int  # socket errors plus answers with status >= 400
    wrk_cpu: float  # wrk's CPU time / wall time (1.0 = one core busy)
    server_cpu: float  # the server's process tree's CPU time / wall time

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu * self.seconds / self.requests * 1e6 if self.requests else 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def ensure_wrk() -> str:
    """The wrk binary, installed from Debian if missing; returns its version line."""
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install -y wrk ...", file=sys.stderr, flush=True)
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (out.stdout + out.stderr).splitlines()[0].split(" Copyright")[0]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` (all their threads), from /proc."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))
    return total / CLOCK_TICKS


def run_wrk(
    host: str, script: str, connections: int, seconds: int, scratch: Path, server_pids: list[int] | None = None
) -> Result:
    """Run wrk against ``http://host`` for ``seconds`` with ``connections`` connections on one thread."""
    pids = server_pids or []
    script_path = scratch / f"wrk-{time.monotonic_ns()}.lua"
    script_path.write_text(script)
    cmd = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script_path),
        f"http://{host}/",
    ]
    cpu_before = cpu_seconds(pids)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    server_cpu = (cpu_seconds(pids) - cpu_before) / wall if wall else 0.0
    script_path.unlink(missing_ok=True)
    line = next((x for x in out.splitlines() if x.startswith("BENCHJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {out}\n{err}")
    d = json.loads(line[len("BENCHJSON ") :])
    errors = d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"]
    return Result(
        requests=d["requests"],
        seconds=d["duration_us"] / 1e6,
        p50_ms=d["p50_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
        mean_ms=d["mean_us"] / 1000,
        errors=errors,
        wrk_cpu=(usage.ru_utime + usage.ru_stime) / wall if wall else 0.0,
        server_cpu=server_cpu,
    )
