"""bench/metering: what metering costs the hot path, how fast events are ingested, how fast a report is.

1. Invocation throughput (Converse, closed loop) with metering off, on, and on with ``metering_fsync =
   "always"``, in one run, rounds alternating so drift hits all alike; the figure is the ratio to "off"
   (goal: at most 5 % lower). Two models behind outcrop: the builtin one, which answers at once (so the
   server is CPU-bound and metering's CPU shows in full: the worst case), and the 20 ms
   OpenAI-compatible backend of ``bench/runtime`` (a model call as gateways see them). The load comes
   from ``wrk`` (C, one thread, a Lua POST script), so that the client is not what limits the
   comparison. The server's CPU time per invocation is printed too: it is what metering costs, whatever
   else runs on the machine.
2. Ingest: events per second through the real ``outcrop.metering.rollups.ingest`` (raw rows + minute/
   hour/day and tag rollups, one transaction per batch of ``Meter``'s batch size), on SQLite, seeding
   ``--events`` events spread over 30 days in time order, as a live server ingests them. A sample hour
   is checked: rollups equal the raw events.
3. Report: latency of a 30-day daily cost report grouped by tag over those events, through the query
   function the CLI calls and through ``GET /_outcrop/usage`` of a server on the seeded database.

    .venv/bin/python bench/metering/run.py [--seconds 8] [--rounds 3] [--concurrency 32] [--events 10000000]
        [--backend builtin|openai|both] [--skip-throughput] [--skip-report]
    .venv/bin/python bench/metering/run.py --quick        # 3 s rounds, 200,000 events
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "bench" / "control_plane"))

from benchlib import BACKEND_DIR, backend_command, backend_config, machine, update_section, uptime  # noqa: E402
from load import cpu_seconds  # noqa: E402
from servers import descendants  # noqa: E402

from outcrop.ids import uuid7  # noqa: E402
from outcrop.metering.ingester import BATCH  # noqa: E402
from outcrop.metering.queries import parse_query, run_query  # noqa: E402
from outcrop.metering.rollups import ingest  # noqa: E402
from outcrop.store.engine import Store  # noqa: E402

MODEL = "amazon.nova-micro-v1:0"
BODY = '{"messages":[{"role":"user","content":[{"text":"Count the strata"}]}]}'
ACCOUNT = "123456789012"  # outcrop's default account: what an unsigned request acts in
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAYS = 30
REPORT = {"since": "2026-01-01", "until": "2026-01-31", "granularity": "day", "groupBy": "tag:team"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    data_dir: Path, metering: bool, database: str | None = None, backend_url: str | None = None,
    fsync: str = "interval",
) -> tuple[subprocess.Popen[bytes], str]:
    """``outcrop serve``; with ``backend_url``, every model is served by that OpenAI-compatible backend."""
    port = free_port()
    env = {**os.environ, "OUTCROP_DATA_DIR": str(data_dir), "OUTCROP_METERING": "on" if metering else "off",
           "OUTCROP_METERING_FSYNC": fsync}
    database = database or f"sqlite:///{data_dir / 'o.db'}"
    # One worker, as the figures recorded in bench/README.md were measured.
    cmd = [sys.executable, "-m", "outcrop", "serve", "--port", str(port), "--database", database, "--workers", "1"]
    if backend_url is not None:
        config = data_dir / "outcrop.toml"
        config.write_text(backend_config(backend_url))
        cmd += ["--config", str(config)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return proc, wait_healthy(f"http://127.0.0.1:{port}", "/_outcrop/health")


def start_backend() -> tuple[subprocess.Popen[bytes], str]:
    """``bench/runtime/backend.py``: an OpenAI-compatible server answering every completion after 20 ms."""
    port = free_port()
    cmd = backend_command(Path(sys.executable), port)
    proc = subprocess.Popen(cmd, cwd=BACKEND_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    return proc, wait_healthy(f"http://127.0.0.1:{port}", "/")


def wait_healthy(url: str, path: str) -> str:
    for _ in range(600):
        try:
            httpx.get(url + path, timeout=1)
            return url
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not start")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(60)


# -- 1. throughput ---------------------------------------------------------------------------------
def wrk_load(url: str, seconds: float, concurrency: int, script: Path) -> int:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "-s", str(script), url + f"/model/{MODEL}/converse"],
        capture_output=True, text=True, check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failures:\n{out}")
    return int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]


VARIANTS = (("off", False, "interval"), ("on", True, "interval"), ("on, fsync always", True, "always"))


def throughput(args: argparse.Namespace, backend_url: str | None) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Req/s of each variant (metering off, on, on with fsync "always"), rounds alternating; CPU µs/invocation."""
    rates: dict[str, list[float]] = {name: [] for name, _, _ in VARIANTS}
    cpu: dict[str, float] = dict.fromkeys(rates, 0.0)
    count: dict[str, int] = dict.fromkeys(rates, 0)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(f"wrk.method = \"POST\"\nwrk.body = '{BODY}'\n"
                          "wrk.headers[\"Content-Type\"] = \"application/json\"\n")
        servers = {}
        try:
            for i, (name, metering, fsync) in enumerate(VARIANTS):
                d = Path(tmp) / str(i)
                d.mkdir()
                servers[name] = start_server(d, metering, backend_url=backend_url, fsync=fsync)
            for _, url in servers.values():  # warm-up
                wrk_load(url, 2.0, args.concurrency, script)
            for _ in range(args.rounds):
                for name, (proc, url) in servers.items():
                    before = cpu_seconds(descendants(proc.pid))  # the ingesters' included
                    t = time.monotonic()
                    n = wrk_load(url, args.seconds, args.concurrency, script)
                    elapsed = time.monotonic() - t
                    cpu[name] += cpu_seconds(descendants(proc.pid)) - before
                    count[name] += n
                    rates[name].append(n / min(elapsed, args.seconds))
        finally:
            for proc, _ in servers.values():
                stop_server(proc)
    return rates, {m: cpu[m] / count[m] * 1e6 for m in cpu}


# -- 2. ingest --------------------------------------------------------------------------------------
TEAMS = ("red", "blue", "green", "amber")
PROFILES = [f"p{i:011d}" for i in range(20)]


def synthetic_events(rng: random.Random, n: int, start_us: int, end_us: int) -> list[dict[str, Any]]:
    """``n`` events in [start_us, end_us), in time order, over 20 application profiles tagged team and env."""
    times = sorted(rng.randrange(start_us, end_us) for _ in range(n))
    out = []
    for t in times:
        i = rng.randrange(len(PROFILES))
        inp, outp = rng.randrange(10, 2000), rng.randrange(10, 800)
        profile = PROFILES[i]
        outcome = "success" if rng.random() < 0.98 else "throttled"
        out.append({
            "request_id": uuid7(t // 1000, rng.getrandbits(74)), "time_us": t, "account": ACCOUNT,
            "source_region": "us-east-1", "inference_region": "us-east-1", "operation": "Converse",
            "model_id": profile, "model_dim": profile,
            "profile_arn": f"arn:aws:bedrock:us-east-1:{ACCOUNT}:application-inference-profile/{profile}",
            "profile_id": profile, "profile_type": "APPLICATION", "foundation_model": MODEL,
            "input_tokens": inp, "output_tokens": outp, "cache_read_tokens": 0, "cache_write_tokens": 0,
            "latency_ms": 20, "ttft_ms": None, "outcome": outcome,
            "error_code": None if outcome == "success" else "ThrottlingException",
            "cost_pusd": inp * 35_000 + outp * 140_000, "identity": f"arn:aws:iam::{ACCOUNT}:root",
            "tags": {"team": TEAMS[i % len(TEAMS)], "env": "prod" if i % 2 else "dev"},
        })
    return out


def seed(store: Store, events: int) -> float:
    """Ingest ``events`` synthetic events over 30 days; returns the seconds spent inside ``ingest``."""
    rng = random.Random(7)
    start_us = int(START.timestamp()) * 1_000_000
    span = DAYS * 86_400_000_000
    seconds = 0.0
    stored = 0
    chunk = 200_000
    while stored < events:
        n = min(chunk, events - stored)
        lo = start_us + span * stored // events
        hi = start_us + span * (stored + n) // events
        batch_events = synthetic_events(rng, n, lo, hi)
        t = time.perf_counter()
        for i in range(0, n, BATCH):
            part = batch_events[i:i + BATCH]
            store.write_sync(lambda conn, p=part: ingest(conn, p))  # type: ignore[misc]
        seconds += time.perf_counter() - t
        stored += n
        print(f"  seeded {stored:,} events ({stored / seconds:,.0f}/s in ingest)", file=sys.stderr, flush=True)
    return seconds


def check_sample(store: Store) -> None:
    """One hour, every group: the report from rollups equals the one from raw events."""
    q = parse_query(ACCOUNT, "2026-01-15T10:00:00Z", "2026-01-15T11:00:00Z", "minute", ["profile", "tag:team"])
    from_rollups = store.read_sync(lambda conn: run_query(conn, q))
    from_events = store.read_sync(lambda conn: run_query(conn, q, source="events"))
    assert from_rollups == from_events and from_rollups["rows"], "rollups differ from the raw events"


# -- 3. report --------------------------------------------------------------------------------------
def report_latencies(store: Store, url: str, events: int, reps: int = 20) -> tuple[list[float], list[float]]:
    query = parse_query(ACCOUNT, REPORT["since"], REPORT["until"], REPORT["granularity"], [REPORT["groupBy"]])
    direct = []
    for _ in range(reps):
        t = time.perf_counter()
        report = store.read_sync(lambda conn: run_query(conn, query))
        direct.append((time.perf_counter() - t) * 1000)
    assert report["totals"]["invocations"] + report["totals"]["throttles"] == events
    http = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(reps):
            t = time.perf_counter()
            r = client.get("/_outcrop/usage", params=REPORT)
            http.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
            assert r.json()["totals"] == report["totals"]
    return direct, http


def ingest_and_report(args: argparse.Namespace) -> tuple[float, list[float], list[float], int]:
    with tempfile.TemporaryDirectory() as tmp:
        database = f"sqlite:///{tmp}/o.db"
        store = Store(database)
        store.migrate()
        seconds = seed(store, args.events)
        check_sample(store)
        size = (Path(tmp) / "o.db").stat().st_size
        server_dir = Path(tmp) / "server"
        server_dir.mkdir()
        proc, url = start_server(server_dir, True, database)
        try:
            direct, http = report_latencies(store, url, args.events)
        finally:
            stop_server(proc)
        store.close()
    return args.events / seconds, direct, http, size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--quick", action="store_true", help="3 s rounds, 2 rounds, 200,000 events")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--backend", choices=("builtin", "openai", "both"), default="both")
    parser.add_argument("--skip-report", action="store_true")
    parser.add_argument("--no-readme", action="store_true", help="print the tables only")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.events = 3.0, 2, min(args.events, 200_000)
    facts = machine("uvicorn", "SQLAlchemy")
    facts.append(f"SQLite {sqlite3.sqlite_version}; outcrop: the working tree on top of {git_head()}")
    out: list[str] = []

    def emit(line: str = "") -> None:
        print(line, flush=True)
        out.append(line)

    if not args.skip_throughput:
        if not shutil.which("wrk"):
            sys.exit("bench/metering needs wrk (Debian: apt-get install wrk)")
        emit("### Invocation throughput, metering off and on")
        emit()
        emit(f"Converse, closed loop, wrk c={args.concurrency}, {args.rounds} rounds of {args.seconds:g} s per "
             "variant, alternating; one server per variant (1 worker, SQLite, default settings but the one "
             "named); CPU is the server's process tree per invocation. Goal: on ÷ off ≥ 0.95.")
        emit()
        emit("| model behind outcrop | metering | req/s (rounds) | ÷ off | server CPU µs/invocation |")
        emit("|---|---|---:|---:|---:|")
        backends: list[tuple[str, str | None]] = []
        if args.backend in ("builtin", "both"):
            backends.append(("builtin (answers at once: CPU-bound worst case)", None))
        if args.backend in ("openai", "both"):
            backends.append(("openai-compatible, 20 ms (bench/runtime/backend.py)", "openai"))
        for label, kind in backends:
            backend = start_backend() if kind else None
            try:
                rates, cpu_us = throughput(args, backend[1] if backend else None)
            finally:
                if backend:
                    stop_server(backend[0])
            off = statistics.mean(rates["off"])
            for name, values in rates.items():
                mean = statistics.mean(values)
                emit(f"| {label} | {name} | {mean:,.0f} ({', '.join(f'{v:,.0f}' for v in values)}) | "
                     f"{mean / off:.3f} | {cpu_us[name]:,.0f} |")
        emit()
    if not args.skip_report:
        rate, direct, http, size = ingest_and_report(args)
        emit("### Ingest and the 30-day report")
        emit()
        emit(f"{args.events:,} synthetic events over 30 days (20 application profiles tagged team and env, "
             "request IDs as outcrop makes them), ingested in time order by the real `rollups.ingest`; "
             f"then `{REPORT}` 20 times through the query function the CLI calls and through "
             "`GET /_outcrop/usage`. Goal: the report under 200 ms.")
        emit()
        emit("| measure | value |\n|---|---|")
        emit(f"| ingest, events/s (SQLite, batches of {BATCH:,}, 30 days in time order) | {rate:,.0f} |")
        emit(f"| database after {args.events:,} events | {size / 2**30:.2f} GiB |")
        emit(f"| 30-day daily cost report by tag over {args.events:,} events, query function (CLI), "
             f"p50 / max ms | {statistics.median(direct):.1f} / {max(direct):.1f} |")
        emit(f"| … through GET /_outcrop/usage, p50 / max ms | {statistics.median(http):.1f} / {max(http):.1f} |")
        emit()
    facts.append(f"uptime after the run: {uptime()}")
    if not args.no_readme and out:
        head = ["## metering", "",
                "Issue 5. `.venv/bin/python bench/metering/run.py [--quick] [--skip-throughput] [--skip-report]` "
                "(needs wrk).", "", *(f"- {f}" for f in facts), ""]
        update_section("\n".join(head + out))


def git_head() -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()


if __name__ == "__main__":
    main()
