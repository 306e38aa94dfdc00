"""Where outcrop's time goes in GetInferenceProfile and CreateInferenceProfile.

    .venv/bin/python bench/control_plane/hotspots.py [--seconds N] [--database sqlite|postgresql]

Two views, both of the same commit that run.py measures (HEAD, exported with git archive):

1. py-spy samples the running server's worker process while wrk drives one operation at 32 connections:
   the share of samples per thread, per layer (uvicorn/asyncio, outcrop's own modules, SQLAlchemy, the
   database driver, ...) and per function (self and inclusive).
2. cProfile of the ASGI app driven in-process (no HTTP server), one request at a time: exact call counts
   and per-request microseconds of each step.

Raw py-spy output is kept in bench/results/ (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import io
import itertools
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from load import authorization, create_script, ensure_wrk, get_script, run_wrk
from seed import create_over_http
from servers import (
    HERE,
    PEERS_VENV,
    create_pg_database,
    drop_pg_database,
    snapshot_source,
    start_outcrop,
)

RESULTS = HERE.parent / "results"
REGION = "us-east-1"
PY_SPY = PEERS_VENV / "bin" / "py-spy"

LAYERS: tuple[tuple[str, str], ...] = (
    ("outcrop/wire/", "outcrop.wire (parse, validate, serialize)"),
    ("outcrop/store/", "outcrop.store (writer, read path)"),
    ("outcrop/control/", "outcrop.control (operations)"),
    ("outcrop/app.py", "outcrop.app (routing, identify, respond)"),
    ("outcrop/", "outcrop, other"),
    ("sqlalchemy/", "SQLAlchemy"),
    ("psycopg", "psycopg"),
    ("sqlite3/", "sqlite3 module"),
    ("botocore/", "botocore"),
    ("orjson", "orjson"),
    ("asyncio/", "asyncio"),
    ("uvicorn/", "uvicorn"),
    ("concurrent/futures", "concurrent.futures"),
    ("threading.py", "threading"),
    ("queue.py", "queue"),
    ("uuid.py", "uuid"),
    ("secrets.py", "secrets/random"),
    ("random.py", "secrets/random"),
    ("hashlib", "hashlib"),
)


def ensure_py_spy() -> Path:
    if not PY_SPY.exists():
        subprocess.run([str(PEERS_VENV / "bin" / "pip"), "install", "-q", "py-spy"], check=True)
    return PY_SPY


def layer_of(frame: str) -> str:
    for needle, name in LAYERS:
        if needle in frame:
            return name
    return "other (stdlib, builtins)"


def frame_file(frame: str) -> str:
    return frame.rsplit("(", 1)[-1].rstrip(")")


def short(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py:123)`` with the package kept for outcrop."""
    name, _, where = frame.rpartition(" (")
    where = where.rstrip(")")
    for marker in ("outcrop/", "sqlalchemy/", "uvicorn/", "asyncio/", "psycopg/", "concurrent/"):
        if marker in where:
            return f"{name} ({marker}{where.split(marker, 1)[1]})"
    return f"{name} ({where.rsplit('/', 1)[-1]})"


def summarize(raw: Path, top: int) -> str:
    """Per-thread, per-layer and per-function shares of py-spy's collapsed stacks."""
    stacks: list[tuple[str, list[str], int]] = []
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        path, _, count = line.rpartition(" ")
        frames = path.split(";")
        thread = frames[0]
        stacks.append((thread, frames[1:], int(count)))
    total = sum(n for _, _, n in stacks) or 1
    threads: collections.Counter[str] = collections.Counter()
    layers: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for thread, frames, n in stacks:
        threads[thread.split(" ")[-1].strip('"') if '"' in thread else thread] += n
        if frames:
            # The layer of a sample is the innermost frame that is not plain stdlib glue.
            layer = next((layer_of(f) for f in reversed(frames) if layer_of(f) != "other (stdlib, builtins)"),
                         "other (stdlib, builtins)")
            if "sqlite3" in frames[-1] or ("execute" in frames[-1] and "sqlalchemy/engine/default" in frames[-1]):
                layer = "database driver call (sqlite3/psycopg C code)"
            layers[layer] += n
            self_time[short(frames[-1])] += n
            for f in set(frames):
                inclusive[short(f)] += n
    out = io.StringIO()
    out.write(f"{total} samples\n\nthreads:\n")
    for name, n in threads.most_common():
        out.write(f"  {n / total:6.1%}  {name}\n")
    out.write("\nlayers (innermost non-stdlib frame of each sample):\n")
    for name, n in layers.most_common():
        out.write(f"  {n / total:6.1%}  {name}\n")
    out.write(f"\nself time, top {top}:\n")
    for name, n in self_time.most_common(top):
        out.write(f"  {n / total:6.1%}  {name}\n")
    out.write(f"\ninclusive time, top {top} outside asyncio/uvicorn/threading:\n")
    shown = 0
    for name, n in inclusive.most_common():
        if any(x in name for x in ("asyncio/", "uvicorn/", "threading.py", "_bootstrap", "<module>", "run (")):
            continue
        out.write(f"  {n / total:6.1%}  {name}\n")
        shown += 1
        if shown >= top:
            break
    return out.getvalue()


def sample(server_pid: int, host: str, script: str, seconds: int, scratch: Path, out: Path) -> str:
    """py-spy the worker while wrk drives ``script`` at 32 connections."""
    spy = subprocess.Popen(
        [str(ensure_py_spy()), "record", "--pid", str(server_pid), "--rate", "200", "--duration", str(seconds),
         "--format", "raw", "--threads", "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    time.sleep(0.5)
    r = run_wrk(host, script, 32, seconds, scratch)
    _, err = spy.communicate(timeout=seconds + 30)
    if spy.returncode != 0:
        raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')}")
    return f"wrk while sampling: {r.rps:,.0f} req/s, p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms\n"


# -- in-process cProfile ---------------------------------------------------------------------------------
Message = dict[str, Any]


async def call(app: Callable[..., Awaitable[None]], method: str, path: str, body: bytes) -> int:
    query = b""
    if "?" in path:
        path, q = path.split("?", 1)
        query = q.encode()
    scope = {
        "type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": query,
        "headers": [(b"authorization", authorization(REGION).encode()), (b"content-type", b"application/json"),
                    (b"host", b"127.0.0.1")],
    }
    sent = False
    status = 0

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])

    await app(scope, receive, send)
    return status


def in_process(database_url: str, n: int, top: int) -> str:
    from outcrop.app import create_app
    from outcrop.config import load_config

    os.environ["OUTCROP_APPLICATION_PROFILE_QUOTA"] = "1000000000"
    app = create_app(load_config(database_url=database_url))
    app.start()
    out = io.StringIO()
    try:
        copy_from = "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-express-v1"
        nonce = uuid.uuid4().hex[:8]
        names = itertools.count()

        def create_body(_: int) -> bytes:
            return (
                f'{{"inferenceProfileName":"p{nonce}-{next(names)}","modelSource":{{"copyFrom":"{copy_from}"}}}}'
            ).encode()

        loop = asyncio.new_event_loop()
        ids: list[str] = []
        for i in range(100):
            assert loop.run_until_complete(call(app, "POST", "/inference-profiles", create_body(i))) == 201
        ids = [
            r["inferenceProfileId"]
            for r in loop.run_until_complete(_list_ids(app))
        ]

        async def gets() -> None:
            for i in range(n):
                await call(app, "GET", f"/inference-profiles/{ids[i % len(ids)]}", b"")

        async def creates() -> None:
            for i in range(n):
                await call(app, "POST", "/inference-profiles", create_body(1000 + i))

        async def concurrent_creates() -> None:
            batch = 32
            for lo in range(0, n, batch):
                await asyncio.gather(
                    *(call(app, "POST", "/inference-profiles", create_body(10**6 + lo + j)) for j in range(batch))
                )

        for label, fn in (("GetInferenceProfile, sequential", gets),
                          ("CreateInferenceProfile, sequential (one commit each)", creates),
                          ("CreateInferenceProfile, 32 at a time (group commit)", concurrent_creates)):
            loop.run_until_complete(fn())  # warm
            writes = fn is not gets
            assert app.store is not None
            writer = app.store.writer
            prof, prof_w = cProfile.Profile(), cProfile.Profile()
            w0 = writer.submit(lambda _conn: time.thread_time()).result()
            if writes:  # a job runs on the writer thread: there it can switch that thread's profiler on
                writer.submit(lambda _conn, p=prof_w: p.enable()).result()
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            prof.enable()
            loop.run_until_complete(fn())
            prof.disable()
            wall = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            if writes:
                writer.submit(lambda _conn, p=prof_w: p.disable()).result()
            w1 = writer.submit(lambda _conn: time.thread_time()).result()
            out.write(f"\n=== {label}: {n} requests; per request {wall / n * 1e6:.0f} us wall, {cpu / n * 1e6:.0f} us "
                      f"CPU in all threads, of which {(w1 - w0) / n * 1e6:.0f} us in the writer thread "
                      f"(under cProfile, so inflated; threads: {threading.active_count()})\n")
            text = io.StringIO()
            stats = pstats.Stats(prof, stream=text)
            stats.sort_stats("cumulative").print_stats(r"outcrop|sqlalchemy/engine/base|orjson|botocore", top)
            out.write("--- event-loop thread, by cumulative time\n" + _trim(text.getvalue()))
            if writes:
                text = io.StringIO()
                pstats.Stats(prof_w, stream=text).sort_stats("tottime").print_stats(top)
                out.write("--- writer thread, by own time\n" + _trim(text.getvalue()))
        loop.close()
    finally:
        app.stop()
    return out.getvalue()


async def _list_ids(app: Any) -> list[dict[str, Any]]:
    captured: list[bytes] = []
    scope = {
        "type": "http", "method": "GET", "path": "/inference-profiles", "raw_path": b"/inference-profiles",
        "query_string": b"type=APPLICATION&maxResults=100",
        "headers": [(b"authorization", authorization(REGION).encode())],
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            captured.append(message["body"])

    await app(scope, receive, send)
    import orjson

    result: list[dict[str, Any]] = orjson.loads(b"".join(captured))["inferenceProfileSummaries"]
    return result


def _trim(text: str) -> str:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return "\n".join(line.replace(str(Path.home()), "~") for line in lines[start:] if line.strip()) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="py-spy sampling time per operation")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--requests", type=int, default=2000, help="requests per in-process cProfile run")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--source", default="HEAD", help="commit to profile, or 'worktree'")
    args = parser.parse_args(argv)

    ensure_wrk()
    RESULTS.mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="outcrop-hotspots-"))
    source: Path | None = None
    if args.source != "worktree":
        source, rev = snapshot_source(args.source, scratch / "source")
        sys.path.insert(0, str(source))
        print(f"outcrop commit {rev}")
    pg: list[str] = []

    def database() -> str:
        if args.database == "sqlite":
            return f"sqlite:///{scratch / (uuid.uuid4().hex + '.db')}"
        url = create_pg_database()
        pg.append(url)
        return url

    try:
        server = start_outcrop(database(), scratch, args.database, source)
        try:
            ids = create_over_http(server.host, REGION, 100, prefix="h" + uuid.uuid4().hex[:6])
            # One worker serves in the server's own process; its child is the metering ingester.
            worker = server.proc.pid
            for op, script in (("GetInferenceProfile", get_script(REGION, ids)),
                               ("CreateInferenceProfile", create_script(REGION, "h" + uuid.uuid4().hex[:6]))):
                raw = RESULTS / f"pyspy-{op}-{args.database}.txt"
                head = sample(worker, server.host, script, args.seconds, scratch, raw)
                print(f"\n##### py-spy: {op} at c=32 on {args.database} ({raw})\n{head}{summarize(raw, args.top)}")
        finally:
            server.stop()
        print(f"\n##### cProfile, in-process, {args.database}")
        print(in_process(database(), args.requests, args.top))
    finally:
        for url in pg:
            drop_pg_database(url)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
