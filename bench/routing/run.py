"""bench/routing: what cross-Region routing buys, in one run against a real ``outcrop serve``.

    .venv/bin/python bench/routing/run.py [--seconds 8] [--concurrency 8] [--service-ms 250]

Three Regions (us-east-1, us-west-2, us-east-2) serve Nova Micro and Nova Lite on the builtin model,
which holds each request ``--service-ms`` before answering. Closed-loop clients send Converse calls from
us-east-1 (a throttled client retries at once, as an unthrottled load generator would).

1. Capacity: each Region capped at C concurrent requests; 3C clients on the US profile. The profile
   should sustain ≥ 90% of 3C requests in flight (outstanding at the router, sampled every 100 ms).
2. Goodput: the same 3C clients on the foundation model in us-east-1 only (capped at C).
3. Failures: no caps; us-east-1 fails half its calls (chaos ``error``, probability 0.5); success rate
   and the p99 the failovers add over a clean run.

Prints a table and rewrites the ``routing`` section of bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from benchlib import update_section  # noqa: E402

README = ROOT / "bench" / "README.md"
MICRO, LITE = "amazon.nova-micro-v1:0", "amazon.nova-lite-v1:0"
BODY = {"messages": [{"role": "user", "content": [{"text": "Hello there"}]}], "inferenceConfig": {"maxTokens": 8}}


@dataclass
class Result:
    name: str
    seconds: float
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    regions: dict[str, int] = field(default_factory=dict)
    in_flight: list[int] = field(default_factory=list)  # outstanding at the router, sampled

    def pct(self, p: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else 0.0

    @property
    def total(self) -> int:
        return self.ok + sum(self.errors.values())


async def load(url: str, model_id: str, clients: int, seconds: float, name: str) -> Result:
    result = Result(name, seconds)
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def one() -> None:
            while time.monotonic() < deadline:
                started = time.monotonic()
                r = await client.post(f"/model/{model_id}/converse", json=BODY)
                if r.status_code == 200:
                    result.ok += 1
                    result.latencies.append(time.monotonic() - started)
                    region = r.headers.get("x-outcrop-inference-region", "?")
                    result.regions[region] = result.regions.get(region, 0) + 1
                else:
                    code = r.headers.get("x-amzn-errortype", str(r.status_code)).split(":")[0]
                    result.errors[code] = result.errors.get(code, 0) + 1
                    if r.status_code == 429:
                        await asyncio.sleep(0)  # retry at once, yielding to the others

        async def sample() -> None:
            await asyncio.sleep(0.5)  # past the ramp-up
            while time.monotonic() < deadline - 0.2:
                status = (await client.get("/_outcrop/routing")).json()
                result.in_flight.append(sum(d["outstanding"] for d in status["deployments"]
                                            if d["model"] in model_id))
                await asyncio.sleep(0.1)

        await asyncio.gather(sample(), *(one() for _ in range(clients)))
    return result


def start_server(tmp: Path, config: str) -> tuple[subprocess.Popen[bytes], str]:
    with socketless_port() as port:
        pass
    (tmp / "outcrop.toml").write_text(config)
    env = {**os.environ, "OUTCROP_DATA_DIR": str(tmp), "OUTCROP_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "outcrop", "serve", "--port", str(port), "--database", f"sqlite:///{tmp / 'o.db'}",
         "--config", str(tmp / "outcrop.toml"), "--workers", "1"],  # one worker's breakers, seen whole
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "wb"),  # noqa: SIM115
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/_outcrop/health").status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("outcrop did not start: " + (tmp / "server.log").read_text()[-2000:])


class socketless_port:  # a context manager used like a function
    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *args: object) -> None:
        pass


async def scenarios(url: str, c: int, seconds: float, service_s: float) -> list[Result]:
    out = [
        await load(url, "us." + MICRO, 3 * c, seconds, "capacity: US profile, 3 Regions x C"),
        await load(url, MICRO, 3 * c, seconds, "goodput: us-east-1 only, C"),
        await load(url, "us." + LITE, 3 * c, seconds, "clean: US profile, uncapped"),
    ]
    httpx.post(url + "/_outcrop/chaos", json={"region": "us-east-1", "model": LITE, "fault": "error",
                                              "probability": 0.5})
    out.append(await load(url, "us." + LITE, 3 * c, seconds, "us-east-1 fails 50%: US profile"))
    httpx.delete(url + "/_outcrop/chaos")
    return out


def machine() -> str:
    load = os.getloadavg()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return (f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; nproc: {os.cpu_count()}; CPU: {cpu}; "
            f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n"
            f"- Python {platform.python_version()}; outcrop commit {commit} (working tree); 1 worker, "
            "SQLite, metering on; load generator (httpx, asyncio) on the same 2 cores")


def report(results: list[Result], c: int, service_s: float, head: str) -> str:
    lines = [
        "| scenario | clients | ok/s | in flight at the router (mean) | success | p50 ms | p99 ms | errors | served in |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        rate = r.ok / r.seconds
        errors = ", ".join(f"{k} {v}" for k, v in sorted(r.errors.items())) or "0"
        regions = ", ".join(f"{k} {v}" for k, v in sorted(r.regions.items()))
        success = 100 * r.ok / r.total if r.total else 0
        lines.append(f"| {r.name} | {3 * c} | {rate:,.1f} | {sum(r.in_flight) / max(len(r.in_flight), 1):.1f} | {success:.2f}% | "
                     f"{r.pct(0.5):.0f} | {r.pct(0.99):.0f} | {errors} | {regions} |")
    cap, single, clean, failing = results
    in_flight = sum(cap.in_flight) / max(len(cap.in_flight), 1)
    added = failing.pct(0.99) - clean.pct(0.99)
    summary = [
        f"- Capacity: the profile held {in_flight:.1f} requests in flight of 3C = {3 * c} "
        f"({100 * in_flight / (3 * c):.0f}%; target ≥ 90%).",
        f"- Goodput, profile vs one Region: {cap.ok / cap.seconds:,.1f} vs {single.ok / single.seconds:,.1f} ok/s "
        f"(x{(cap.ok / max(single.ok, 1)):.2f}).",
        f"- One Region failing half its calls: {100 * failing.ok / max(failing.total, 1):.3f}% success "
        f"(target ≥ 99.9%); p99 {failing.pct(0.99):.0f} ms vs {clean.pct(0.99):.0f} ms clean (+{added:.0f} ms).",
    ]
    return head + "\n\n" + "\n".join(lines) + "\n\n" + "\n".join(summary) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=8, help="C: concurrent requests per Region")
    parser.add_argument("--service-ms", type=int, default=1000)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    c, service_s = args.concurrency, args.service_ms / 1000
    config = f"""
[[deployments]]
model = "{MICRO}"
max_concurrency = {c}
ttft_ms = {args.service_ms}

[[deployments]]
model = "{LITE}"
ttft_ms = {args.service_ms}
"""
    head_machine = machine()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp), config)
        try:
            results = asyncio.run(scenarios(url, c, args.seconds, service_s))
        finally:
            proc.terminate()
            proc.wait(15)
    head = (f"Issue 4. `.venv/bin/python bench/routing/run.py` (C = {c}, builtin service time {args.service_ms} ms, "
            f"{args.seconds:g} s per scenario, closed loop, 3C = {3 * c} clients calling Converse from us-east-1; "
            "a throttled client retries at once).\n\n" + head_machine)
    section = report(results, c, service_s, head)
    print(section)
    if not args.no_readme:
        update_section("## routing\n\n" + section)


if __name__ == "__main__":
    main()
