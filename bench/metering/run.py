"""bench/metering: what metering costs the hot path, how fast events are ingested, how fast a report is.

1. Invocation throughput (Converse, builtin model, closed loop) with metering on against off, in one run,
   rounds alternating so drift hits both alike; the figure is the ratio (goal: at most 5 % lower).
2. Ingest: events per second through ``outcrop.metering.rollups.ingest`` (raw rows + minute/hour/day and
   tag rollups, one transaction per batch), on SQLite.
3. Report: latency of a 30-day daily cost report grouped by tag over the stored events.

    .venv/bin/python bench/metering/run.py [--seconds 8] [--rounds 2] [--concurrency 32] [--events 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from outcrop.metering.queries import parse_query, run_query  # noqa: E402
from outcrop.metering.rollups import ingest  # noqa: E402
from outcrop.store.engine import Store  # noqa: E402

MODEL = "amazon.nova-micro-v1:0"
BODY = {"messages": [{"role": "user", "content": [{"text": "Count the strata"}]}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, metering: bool) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "OUTCROP_DATA_DIR": str(data_dir), "OUTCROP_METERING": "on" if metering else "off"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "outcrop", "serve", "--port", str(port), "--database", f"sqlite:///{data_dir / 'o.db'}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/_outcrop/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError("server did not start")


async def closed_loop(url: str, seconds: float, concurrency: int) -> float:
    done = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                r = await client.post(f"/model/{MODEL}/converse", json=BODY)
                assert r.status_code == 200, r.text
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / seconds


def throughput(args: argparse.Namespace) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        servers = {}
        for mode in ("off", "on"):
            d = Path(tmp) / mode
            d.mkdir()
            servers[mode] = start_server(d, mode == "on")
        try:
            for mode in ("off", "on"):  # warm-up
                asyncio.run(closed_loop(servers[mode][1], 1.0, args.concurrency))
            for _ in range(args.rounds):
                for mode in ("off", "on"):
                    results[mode].append(asyncio.run(closed_loop(servers[mode][1], args.seconds, args.concurrency)))
        finally:
            for proc, _ in servers.values():
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
    return results


def synthetic_events(n: int, start_us: int, days: int) -> list[dict]:
    rng = random.Random(7)
    teams = ["red", "blue", "green", "amber"]
    profiles = [f"p{i:011d}" for i in range(20)]
    span = days * 86_400_000_000
    out = []
    for _ in range(n):
        i = rng.randrange(len(profiles))
        inp, outp = rng.randrange(10, 2000), rng.randrange(10, 800)
        out.append({
            "request_id": str(uuid.uuid4()), "time_us": start_us + rng.randrange(span), "account": "123456789012",
            "source_region": "us-east-1", "inference_region": "us-east-1", "operation": "Converse",
            "model_id": profiles[i], "model_dim": profiles[i],
            "profile_arn": f"arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/{profiles[i]}",
            "profile_id": profiles[i], "profile_type": "APPLICATION", "foundation_model": MODEL,
            "input_tokens": inp, "output_tokens": outp, "cache_read_tokens": 0, "cache_write_tokens": 0,
            "latency_ms": 20, "ttft_ms": None, "outcome": "success", "error_code": None,
            "cost_pusd": inp * 35_000 + outp * 140_000, "identity": "arn:aws:iam::123456789012:root",
            "tags": {"team": teams[i % len(teams)], "env": "prod" if i % 2 else "dev"},
        })
    return out


def ingest_and_report(args: argparse.Namespace) -> tuple[float, int, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/o.db")
        store.migrate()
        start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        start_us = int(start.timestamp()) * 1_000_000
        chunk, batch = 100_000, 2000
        seconds = 0.0
        stored = 0
        while stored < args.events:
            events = synthetic_events(min(chunk, args.events - stored), start_us, 30)
            t = time.perf_counter()
            for i in range(0, len(events), batch):
                part = events[i:i + batch]
                store.write_sync(lambda conn, p=part: ingest(conn, p))  # type: ignore[misc]
            seconds += time.perf_counter() - t
            stored += len(events)
        query = parse_query("123456789012", "2026-01-01", "2026-01-31", "day", ["tag:team"])
        latencies = []
        for _ in range(20):
            t = time.perf_counter()
            report = store.read_sync(lambda conn: run_query(conn, query))
            latencies.append((time.perf_counter() - t) * 1000)
        assert report["totals"]["invocations"] == args.events
        store.close()
    return stored / seconds, stored, latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    results = throughput(args)
    off, on = statistics.mean(results["off"]), statistics.mean(results["on"])
    rate, stored, latencies = ingest_and_report(args)
    print("| measure | value |\n|---|---|")
    print(f"| Converse req/s, metering off (c={args.concurrency}) | {off:,.0f} ({', '.join(f'{v:,.0f}' for v in results['off'])}) |")
    print(f"| Converse req/s, metering on | {on:,.0f} ({', '.join(f'{v:,.0f}' for v in results['on'])}) |")
    print(f"| on / off | {on / off:.3f} ({(1 - on / off) * 100:+.1f} % lower) |")
    print(f"| ingest, events/s (SQLite, batches of 2,000) | {rate:,.0f} |")
    print(f"| 30-day daily cost report by tag over {stored:,} events, p50 / max ms | "
          f"{statistics.median(latencies):.1f} / {max(latencies):.1f} |")


if __name__ == "__main__":
    main()
