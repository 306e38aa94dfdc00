"""Runtime benchmark (issue 3): a 20 ms OpenAI-compatible backend called directly, through a do-nothing
proxy (the floor), through outcrop (Converse on a model and on an application profile) and through
LiteLLM's proxy, at 1, 16 and 64 concurrent requests, all in one run on loopback.

    .venv/bin/python bench/runtime/run.py [--quick] [--no-readme] [--seconds N] [--rounds N] [--source HEAD|worktree]

Every server is started here on a free loopback port and stopped at the end; every load run is bounded
in time. Throughput and latency come from wrk (Lua POST scripts, closed loop, keep-alive); time to first
byte of streams from ``ttfb.py`` (asyncio, keep-alive). "Added" latency is a gateway's p50/p99 minus the
direct call's at the same concurrency, in the same round: the unary cells are measured in ``--rounds``
rounds (default 3), each going through every concurrency and target in turn, and a cell shows the median
over rounds (added latency: the median of the per-round differences, with their range), so that a
passing disturbance of this shared machine moves one round, not the figure. The table is printed and written into
bench/README.md (section ``runtime``). LiteLLM is installed into bench/.venv-litellm when missing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from statistics import median

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "control_plane"))
sys.path.insert(0, str(HERE.parent))

from benchlib import (  # noqa: E402
    BACKEND_DIR,
    asgi_command,
    backend_command,
    backend_config,
    machine,
    update_section,
    uptime,
)
from load import Result, ensure_wrk, run_wrk  # noqa: E402
from servers import MAIN_PYTHON, REPO, Server, free_port, snapshot_source  # noqa: E402

README = HERE.parent / "README.md"
SECTION = "runtime"
LITELLM_VENV = HERE.parent / ".venv-litellm"
LITELLM_VERSION = "1.110.2"
CONCURRENCY = (1, 16, 64)
TTFB_CONCURRENCY = (1, 16)
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
MODEL_ARN = f"arn:aws:bedrock:us-east-1::foundation-model/{MODEL}"
PROMPT = "Hello! Please give me a short answer."
CONVERSE_BODY = json.dumps(
    {"messages": [{"role": "user", "content": [{"text": PROMPT}]}], "inferenceConfig": {"maxTokens": 64}},
    separators=(",", ":"),
)
OPENAI_BODY = json.dumps(
    {"model": "bench", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64}, separators=(",", ":")
)
OPENAI_STREAM_BODY = json.dumps(
    {"model": "bench", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64, "stream": True},
    separators=(",", ":"),
)


@dataclass(frozen=True)
class Target:
    """One way of calling the backend: ``name`` as printed, the server, its unary and streaming requests."""

    name: str
    server: Server
    path: str
    body: str
    stream_path: str | None
    stream_body: str
    gateway: bool = True
    authorization: str | None = None  # the Authorization header's value


@dataclass(frozen=True)
class Cell:
    target: str
    connections: int
    result: Result
    round: int = 0


@dataclass(frozen=True)
class StreamCell:
    target: str
    connections: int
    requests: int
    seconds: float
    errors: int
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    total_p50_ms: float
    total_p99_ms: float
    client_cpu: float


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- servers ---------------------------------------------------------------------------------------------
def spawn(name: str, cmd: list[str], env: dict[str, str], workdir: Path, port: int, health: str,
          timeout: float = 60.0) -> Server:
    log_path = workdir / f"{name.replace(' ', '_').replace('/', '_').replace(',', '')}-{port}.log"
    log_file = open(log_path, "ab")  # noqa: SIM115 - the child keeps it; closed when we exit
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        cwd=workdir,
    )
    server = Server(name=name, port=port, proc=proc, log_path=log_path, health_path=health)
    return server.wait_ready(timeout)


def start_backend(workdir: Path) -> Server:
    port = free_port()
    return spawn("backend", backend_command(MAIN_PYTHON, port), {"PYTHONPATH": str(BACKEND_DIR)}, workdir, port, "/")


CORES = len(os.sched_getaffinity(0))  # the workers ``outcrop serve`` runs by default: one per core


def start_floor(backend: Server, workdir: Path, source: Path | None) -> Server:
    """``proxy.py`` under the server ``outcrop serve`` runs on, with as many workers as its default."""
    port = free_port()
    cmd = asgi_command(MAIN_PYTHON, "proxy:app", port, workers=CORES)
    path = os.pathsep.join([str(HERE), *([str(source)] if source is not None else [])])
    return spawn("floor", cmd, {"PYTHONPATH": path, "BACKEND_URL": backend.url}, workdir, port, "/")


def start_outcrop(backend: Server, workdir: Path, source: Path | None, metering: bool, workers: int | None = None,
                  ingest: str = "process") -> Server:
    """``outcrop serve`` with its default workers (one per core), or ``workers``."""
    port = free_port()
    label = ("outcrop" if metering else "outcrop-nometer") + (f"-{workers}w" if workers else "")
    label += "" if ingest == "process" else f"-{ingest}"
    data = workdir / label
    data.mkdir()
    config = data / "outcrop.toml"
    config.write_text(backend_config(backend.url))
    cmd = [str(MAIN_PYTHON), "-m", "outcrop", "serve", "--port", str(port), "--database",
           f"sqlite:///{data / 'outcrop.db'}", "--config", str(config), *(["--workers", str(workers)] if workers else [])]
    env = {"OUTCROP_DATA_DIR": str(data), "OUTCROP_METERING": "on" if metering else "off",
           "OUTCROP_LOG_LEVEL": "warning", "OUTCROP_METERING_INGEST": ingest}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return spawn(label, cmd, env, workdir, port, "/_outcrop/health")


def ensure_litellm() -> str:
    """Install litellm and its proxy's dependencies into bench/.venv-litellm when missing; its version.

    ``litellm[proxy]`` names a ``litellm-proxy`` distribution of the same version that the package
    index does not have (the proxy's code ships inside ``litellm`` itself), so when the extra cannot be
    installed, the extra's other requirements are read from litellm's own metadata and installed
    alongside (its exact pins of litellm's side packages relaxed to whatever version the index has).
    """
    python = LITELLM_VENV / "bin" / "python"
    if not (LITELLM_VENV / "bin" / "litellm").exists() or _litellm_version(python) != LITELLM_VERSION:
        log(f"installing litellm {LITELLM_VERSION} and its proxy extra into {LITELLM_VENV} ...")
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        proc = subprocess.run([*pip, f"litellm[proxy]=={LITELLM_VERSION}"], check=False)
        if proc.returncode != 0:
            subprocess.run([*pip, f"litellm=={LITELLM_VERSION}"], check=True)
            extra = subprocess.run([str(python), "-c", _PROXY_REQUIREMENTS], capture_output=True, text=True,
                                   check=True).stdout.split()
            subprocess.run([*pip, *extra], check=True)
    return _litellm_version(python)


_PROXY_REQUIREMENTS = """
import importlib.metadata as m
from packaging.requirements import Requirement
for raw in m.requires("litellm") or []:
    r = Requirement(raw)
    if r.marker and r.marker.evaluate({"extra": "proxy"}) and not r.marker.evaluate({"extra": ""}) \\
            and r.name != "litellm-proxy":
        # Exact pins of litellm's own side packages (-extras, -enterprise) may be missing from the index too.
        print(r.name if str(r.specifier).startswith("==") else str(r).split(";")[0].replace(" ", ""))
"""


def _litellm_version(python: Path) -> str:
    if not python.exists():
        return ""
    out = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip()


MASTER_KEY = "sk-bench-" + secrets.token_hex(16)


def start_litellm(backend: Server, workdir: Path) -> Server:
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: bench\n"
        "    litellm_params:\n"
        "      model: openai/bench\n"
        f"      api_base: {backend.url}/v1\n"
        "      api_key: sk-bench\n"
        "litellm_settings:\n"
        "  num_retries: 0\n"
        "  telemetry: false\n"
    )
    cmd = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1",
           "--port", str(port), "--num_workers", "1", "--telemetry", "False"]
    # It refuses to start without a master key; callers present it as a bearer token (no database).
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_MODE": "PRODUCTION",
           "LITELLM_MASTER_KEY": MASTER_KEY}
    return spawn("LiteLLM proxy", cmd, env, workdir, port, "/health/liveliness", timeout=180)


def post(server: Server, path: str, body: str, authorization: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    try:
        conn.request("POST", path, body=body.encode(), headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def create_profile(outcrop: Server) -> str:
    status, body = post(outcrop, "/inference-profiles", json.dumps(
        {"inferenceProfileName": f"bench-{time.monotonic_ns()}", "modelSource": {"copyFrom": MODEL_ARN}}))
    if status != 201 and status != 200:
        raise RuntimeError(f"CreateInferenceProfile answered {status}: {body[:500]!r}")
    return str(json.loads(body)["inferenceProfileArn"])


def check(target: Target) -> None:
    """One call of each kind must succeed before the target is measured."""
    for path, body in ((target.path, target.body), (target.stream_path, target.stream_body)):
        if path is None:
            continue
        status, answer = post(target.server, path, body, target.authorization)
        if status != 200 or b"benchmark" not in answer:
            raise RuntimeError(f"{target.name}: POST {path} answered {status}: {answer[:500]!r}")


# -- load ------------------------------------------------------------------------------------------------
def post_script(target: Target) -> str:
    auth = f'wrk.headers["Authorization"] = {json.dumps(target.authorization)}' if target.authorization else ""
    return f"""
wrk.method = "POST"
wrk.path = {json.dumps(target.path)}
wrk.body = {json.dumps(target.body)}
wrk.headers["Content-Type"] = "application/json"
{auth}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,' ..
    '"max_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def ttfb(target: Target, connections: int, seconds: float, scratch: Path) -> StreamCell:
    body_file = scratch / f"stream-{time.monotonic_ns()}.json"
    body_file.write_text(target.stream_body)
    out = subprocess.run(
        [str(MAIN_PYTHON), str(HERE / "ttfb.py"), target.server.host, target.stream_path, str(body_file),
         str(connections), str(seconds), target.authorization or ""], capture_output=True, text=True, check=False, timeout=seconds + 60,
    )
    if out.returncode != 0:
        raise RuntimeError(f"ttfb.py failed against {target.name}: {out.stderr[-2000:]}")
    d = json.loads(out.stdout.strip().splitlines()[-1])
    return StreamCell(target.name, connections, **d)


def measure(targets: list[Target], seconds: int, stream_seconds: float, rounds: int, scratch: Path,
            cells: list[Cell], streams: list[StreamCell]) -> None:
    for n in range(rounds):
        for c in CONCURRENCY:
            for target in targets:
                script = post_script(target)
                # A warm-up at this concurrency, right before the cell: the gateway's connections to the
                # backend grow to c, and whatever the previous cell left behind (another server's load) passes.
                run_wrk(target.server.host, script, c, 1, scratch)
                r = run_wrk(target.server.host, script, c, seconds, scratch, target.server.worker_pids())
                log(f"round {n + 1} {target.name:<26} c={c:<3} {r.rps:8.0f} req/s  p50 {r.p50_ms:7.2f} ms  "
                    f"p99 {r.p99_ms:7.2f} ms  errors {r.errors}  wrk cpu {r.wrk_cpu:.0%}  server cpu {r.server_cpu:.0%}")
                cells.append(Cell(target.name, c, r, n))
    for c in TTFB_CONCURRENCY:
        for target in targets:
            if target.stream_path is None:
                continue
            s = ttfb(target, c, stream_seconds, scratch)
            log(f"{target.name:<26} stream c={c:<3} TTFB p50 {s.ttfb_p50_ms:7.2f} ms  p99 {s.ttfb_p99_ms:7.2f} ms  "
                f"({s.requests} streams, errors {s.errors}, client cpu {s.client_cpu:.0%})")
            streams.append(s)


# -- report ----------------------------------------------------------------------------------------------
def rounds_of(cells: list[Cell], target: str, c: int) -> dict[int, Result]:
    return {x.round: x.result for x in cells if x.target == target and x.connections == c}


def find(cells: list[Cell], target: str, c: int) -> Result | None:
    """The cell's median over its rounds (errors summed, the load generator's CPU at its highest)."""
    results = list(rounds_of(cells, target, c).values())
    if not results:
        return None
    seconds = median(r.seconds for r in results)
    return Result(
        requests=round(median(r.rps for r in results) * seconds), seconds=seconds,
        p50_ms=median(r.p50_ms for r in results), p99_ms=median(r.p99_ms for r in results),
        mean_ms=median(r.mean_ms for r in results), errors=sum(r.errors for r in results),
        wrk_cpu=max(r.wrk_cpu for r in results), server_cpu=median(r.server_cpu for r in results),
    )


def added(cells: list[Cell], target: str, direct: str, c: int) -> tuple[list[float], list[float]]:
    """Per round: the target's p50 and p99 minus the direct call's in the same round."""
    mine, base = rounds_of(cells, target, c), rounds_of(cells, direct, c)
    both = sorted(set(mine) & set(base))
    return ([mine[n].p50_ms - base[n].p50_ms for n in both], [mine[n].p99_ms - base[n].p99_ms for n in both])


def spread(values: list[float]) -> str:
    """The median, and the range over rounds when there were several."""
    if len(values) < 2:
        return f"{median(values):+.2f}"
    return f"{median(values):+.2f} ({min(values):+.2f}…{max(values):+.2f})"


def cell_table(cells: list[Cell], direct: str) -> list[str]:
    lines = [
        "| c | target | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | errors | wrk CPU | server CPU | "
        "server CPU µs/req |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c, name in dict.fromkeys((x.connections, x.target) for x in cells):
        r = find(cells, name, c)
        assert r is not None
        a50, a99 = added(cells, name, direct, c)
        shown = ("—", "—") if name == direct or not a50 else (spread(a50), spread(a99))
        lines.append(
            f"| {c} | {name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {shown[0]} | "
            f"{shown[1]} | {r.errors} | {r.wrk_cpu:.0%} | {r.server_cpu:.0%} | {r.cpu_us_per_request:,.0f} |"
        )
    return lines


def stream_table(streams: list[StreamCell], direct: str) -> list[str]:
    lines = [
        "| c | target | streams/s | TTFB p50 ms | TTFB p99 ms | added TTFB p50 ms | last byte p50 ms | "
        "last byte p99 ms | errors | client CPU |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in streams:
        base = next((x for x in streams if x.target == direct and x.connections == s.connections), None)
        added = "—" if s.target == direct or base is None else f"{s.ttfb_p50_ms - base.ttfb_p50_ms:+.2f}"
        lines.append(
            f"| {s.connections} | {s.target} | {s.requests / s.seconds:,.0f} | {s.ttfb_p50_ms:.2f} | "
            f"{s.ttfb_p99_ms:.2f} | {added} | {s.total_p50_ms:.2f} | {s.total_p99_ms:.2f} | {s.errors} | "
            f"{s.client_cpu:.0%} |"
        )
    return lines


def goal_table(cells: list[Cell], direct: str, outcrops: list[str], litellm: str | None) -> list[str]:
    lines = ["| goal | target | measured | target value | met |", "|---|---|---:|---:|---|"]

    def row(goal: str, target: str, shown: str, wanted: str, ok: bool | None) -> None:
        lines.append(f"| {goal} | {target} | {shown} | {wanted} | {'n/a' if ok is None else ('yes' if ok else '**no**')} |")

    base64 = find(cells, direct, 64)
    lite64 = find(cells, litellm, 64) if litellm else None
    for name in outcrops:
        r64 = find(cells, name, 64)
        a50s, a99s = added(cells, name, direct, 16)
        if a50s:
            a50, a99 = median(a50s), median(a99s)
            row("c=16: latency added at p50", name, f"{spread(a50s)} ms", "≤ 1 ms", a50 <= 1)
            row("c=16: latency added at p99", name, f"{spread(a99s)} ms", "≤ 5 ms", a99 <= 5)
        if r64 and base64:
            ratio = r64.rps / base64.rps
            row("c=64: throughput ÷ direct", name, f"{ratio:.2f}x ({r64.rps:,.0f} / {base64.rps:,.0f} req/s)",
                "≥ 0.80x", ratio >= 0.8)
        if r64 and lite64:
            ratio = r64.rps / lite64.rps
            row("c=64: throughput ÷ LiteLLM", name, f"{ratio:.2f}x ({r64.rps:,.0f} / {lite64.rps:,.0f} req/s)",
                "≥ 5x", ratio >= 5)
    return lines


def generator_lines(cells: list[Cell], streams: list[StreamCell], direct: str) -> list[str]:
    top = max(cells, key=lambda c: c.result.wrk_cpu)
    d64 = find(cells, direct, 64)
    ceiling = 64 / 0.020
    out = [
        f"- Load generator check: wrk used at most {top.result.wrk_cpu:.0%} of one core ({top.target}, "
        f"c={top.connections}); the direct call at c=64 reached {d64.rps if d64 else 0:,.0f} req/s of the "
        f"{ceiling:,.0f} req/s that 64 connections x 20 ms allow ({(d64.rps if d64 else 0) / ceiling:.0%}).",
    ]
    if streams:
        top_s = max(streams, key=lambda s: s.client_cpu)
        out.append(
            f"- The TTFB client used at most {top_s.client_cpu:.0%} of one core ({top_s.target}, c={top_s.connections})."
        )
    return out


def render(cells: list[Cell], streams: list[StreamCell], facts: list[str], direct: str, outcrops: list[str],
           litellm: str | None, seconds: int, stream_seconds: float, rounds: int, quick: bool) -> str:
    parts = [
        f"## {SECTION}",
        "",
        "Issue 3. `.venv/bin/python bench/runtime/run.py [--quick]` (installs wrk from Debian and LiteLLM "
        f"{LITELLM_VERSION} into `bench/.venv-litellm` when missing).",
        "",
        *[f"- {x}" for x in facts],
        "- backend: `bench/runtime/backend.py`, a bare ASGI OpenAI-compatible server under uvicorn (its httptools protocol, 1 worker), "
        "answering every chat completion after a fixed 20 ms (a stream: its first chunk after 20 ms, the rest at once).",
        f"- direct: the backend's `POST /v1/chat/completions`; outcrop: `outcrop serve` (its default of one worker per core, {CORES} here, unless the row says 1, SQLite, "
        "`[[deployments]] backend = \"openai\"`), Converse on the foundation model and on an application profile "
        "made from it, with metering on (the default) and, to show metering's share, off; a row with metering's "
        "ingester on a thread of the server (`metering_ingest = \"thread\"`) instead of its own process, to show "
        "what the process buys; LiteLLM: its proxy "
        "(its default of 1 worker, `LITELLM_LOCAL_MODEL_COST_MAP=True`, `num_retries: 0`, a master key sent as a bearer token, no database), `POST /chat/completions` to a model "
        "routed to the same backend as `openai/bench`.",
        f"- floor: `bench/runtime/proxy.py`, a do-nothing proxy under the same server as outcrop (uvicorn with outcrop's HTTP/1.1 protocol, {CORES} workers, as outcrop's default): it reads "
        "the request, sends one fixed completion to the backend with outcrop's own HTTP client and answers the "
        "backend's bytes. What it adds is the price of the extra hop on this machine; outcrop's own cost is what "
        "outcrop adds beyond it.",
        f"- wrk -t1, closed loop, keep-alive, {seconds} s per cell after a 1 s warm-up of the same target at the same concurrency{' (--quick)' if quick else ''}, "
        f"in {rounds} round{'s' if rounds != 1 else ''} (each round goes through every concurrency and target in turn); a cell shows "
        "the median over rounds, and added latency the median of the per-round differences from the direct "
        "call, with their range in brackets. Every server "
        "and the load generator share the same cores (and whatever else runs on the machine: see uptime). "
        "Server CPU is the gateway's process tree only (the backend's is not included; outcrop's ingester is), per wall second.",
        f"- Streams: `bench/runtime/ttfb.py` (asyncio, keep-alive), {stream_seconds:g} s per cell; TTFB is the time "
        "from sending the request to the first byte of the answer's body (ConverseStream's first event frame; "
        "the first SSE chunk elsewhere).",
        "",
        "### Throughput and latency (unary)",
        "",
        *cell_table(cells, direct),
        "",
        *generator_lines(cells, streams, direct),
        "",
        "### Time to first byte (streams)",
        "",
        *stream_table(streams, direct),
        "",
        "### Goals",
        "",
        *goal_table(cells, direct, outcrops, litellm),
        "",
    ]
    return "\n".join(parts)


def started(stack: ExitStack, start: Callable[[], Server]) -> Server:
    """Start a server that ``stack`` stops on the way out, whatever happens."""
    server = start()
    stack.callback(server.stop)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 s cells, 2 s stream cells")
    parser.add_argument("--seconds", type=int, help="seconds per wrk cell and round (default 5, --quick 3)")
    parser.add_argument("--rounds", type=int, help="rounds of the unary cells (default 3, --quick 1)")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM (no goal ratio against it)")
    parser.add_argument("--no-readme", action="store_true", help="print the table only")
    parser.add_argument(
        "--source", default="HEAD",
        help="commit of outcrop to measure (exported from git), or 'worktree' for src/ as it is (default HEAD)",
    )
    args = parser.parse_args(argv)
    seconds = args.seconds or (3 if args.quick else 5)
    rounds = args.rounds or (1 if args.quick else 3)
    stream_seconds = 2.0 if args.quick else 5.0

    facts = machine("uvicorn", "httpx")
    facts.append(f"load generator: {ensure_wrk()}")
    litellm_version = None if args.no_litellm else ensure_litellm()
    scratch = Path(tempfile.mkdtemp(prefix="outcrop-bench-runtime-"))
    source: Path | None = None
    if args.source == "worktree":
        dirty = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                               text=True, check=False).stdout.strip()
        facts.append(f"outcrop: the working tree's src/ on top of {dirty}")
    else:
        source, rev = snapshot_source(args.source, scratch / "source")
        facts.append(f"outcrop: commit {rev} (exported with git archive)")
    if litellm_version:
        facts.append(f"LiteLLM {litellm_version} (proxy, in bench/.venv-litellm)")
    cells: list[Cell] = []
    streams: list[StreamCell] = []
    direct = "direct"
    outcrops = ["outcrop, model", "outcrop, app profile", "outcrop, model, 1 worker"]
    litellm_name = None if args.no_litellm else "LiteLLM proxy"
    try:
        with ExitStack() as stack:
            backend = started(stack, lambda: start_backend(scratch))
            outcrop = started(stack, lambda: start_outcrop(backend, scratch, source, True))
            bare = started(stack, lambda: start_outcrop(backend, scratch, source, False))
            floor = started(stack, lambda: start_floor(backend, scratch, source))
            one = started(stack, lambda: start_outcrop(backend, scratch, source, True, workers=1))
            threaded = started(stack, lambda: start_outcrop(backend, scratch, source, True, ingest="thread"))
            arn = create_profile(outcrop)
            arn_bare = create_profile(bare)
            quoted = urllib.parse.quote(arn, safe="")
            targets = [
                Target(direct, backend, "/v1/chat/completions", OPENAI_BODY, "/v1/chat/completions",
                       OPENAI_STREAM_BODY, gateway=False),
                Target("floor: do-nothing proxy", floor, "/", CONVERSE_BODY, None, ""),
                Target(outcrops[0], outcrop, f"/model/{MODEL}/converse", CONVERSE_BODY,
                       f"/model/{MODEL}/converse-stream", CONVERSE_BODY),
                Target(outcrops[1], outcrop, f"/model/{quoted}/converse", CONVERSE_BODY,
                       f"/model/{quoted}/converse-stream", CONVERSE_BODY),
                Target(outcrops[2], one, f"/model/{MODEL}/converse", CONVERSE_BODY,
                       f"/model/{MODEL}/converse-stream", CONVERSE_BODY),
                Target("outcrop, model, ingest on a thread", threaded, f"/model/{MODEL}/converse", CONVERSE_BODY,
                       None, ""),
                Target("outcrop, profile, no metering", bare, f"/model/{urllib.parse.quote(arn_bare, safe='')}/converse",
                       CONVERSE_BODY, f"/model/{urllib.parse.quote(arn_bare, safe='')}/converse-stream", CONVERSE_BODY),
            ]
            if litellm_name:
                lite = started(stack, lambda: start_litellm(backend, scratch))
                targets.append(Target(litellm_name, lite, "/chat/completions", OPENAI_BODY, "/chat/completions",
                                      OPENAI_STREAM_BODY, authorization=f"Bearer {MASTER_KEY}"))
            for target in targets:
                check(target)
            log("all targets answer; measuring")
            measure(targets, seconds, stream_seconds, rounds, scratch, cells, streams)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    facts.append(f"uptime after the run: {uptime()}")
    section = render(cells, streams, facts, direct, outcrops, litellm_name, seconds, stream_seconds, rounds,
                     args.quick)
    print(section)
    if not args.no_readme:
        update_section(section)
        log(f"wrote {README}")
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    raise SystemExit(main())
