"""Control-plane benchmark (issue 2): Create/Get/ListInferenceProfiles on outcrop (SQLite and PostgreSQL),
ministack and a bare ASGI callable on the same server stack, plus List-page latency at 1k/10k/100k profiles.

    .venv/bin/python bench/control_plane/run.py [--quick] [--no-readme] [--seconds N]

Every server is started here on a free loopback port and stopped at the end; every load run is bounded
in time. The table is printed and written into bench/README.md (section ``control_plane``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import update_section
from load import Result, create_script, ensure_wrk, get_script, path_script, run_wrk, signed_get_script
from seed import create_over_http, list_path, seed_outcrop, token_at_page
from servers import (
    HERE,
    MAIN_PYTHON,
    Server,
    create_pg_database,
    drop_pg_database,
    ensure_ministack,
    pg_available,
    pg_settings,
    snapshot_source,
    start_bare,
    start_ministack,
    start_outcrop,
)

README = HERE.parent / "README.md"  # where update_section writes
SECTION = "control_plane"
REGION = "us-east-1"  # throughput cells
SCALE_REGION = "us-west-2"  # List-page cells: only seeded profiles live there
OPS = ("CreateInferenceProfile", "GetInferenceProfile", "ListInferenceProfiles")
CONCURRENCY = (1, 8, 32)
PAGE = 100
GET_IDS = 100  # profiles created before the Get/List cells; List returns exactly one page of them


@dataclass(frozen=True)
class Cell:
    server: str
    database: str
    op: str
    connections: int
    result: Result


@dataclass(frozen=True)
class PageCell:
    server: str
    database: str
    stored: int
    page: str  # "first" or "page N"
    result: Result


@dataclass
class Settings:
    seconds: int
    warmup: int
    page_seconds: int
    scale: tuple[int, ...]
    ministack_scale: tuple[int, ...]
    scratch: Path


@contextmanager
def running(start: Callable[[], Server]) -> Iterator[Server]:
    server = start()
    try:
        yield server
    except BaseException:
        log(f"{server.name} failed; the end of its log:\n{server.log_tail()}")
        raise
    finally:
        server.stop()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- throughput ------------------------------------------------------------------------------------------
def throughput(server: Server, database: str, s: Settings, out: list[Cell]) -> None:
    nonce = uuid.uuid4().hex[:8]
    ids = create_over_http(server.host, REGION, GET_IDS, prefix=f"g{nonce}")
    scripts = {
        "GetInferenceProfile": get_script(REGION, ids),
        "ListInferenceProfiles": path_script(REGION, list_path(PAGE)),
        # Create last, so that Get and List see the same 100 profiles on every server.
        "CreateInferenceProfile": create_script(REGION, f"c{nonce}"),
    }
    for op in ("GetInferenceProfile", "ListInferenceProfiles", "CreateInferenceProfile"):
        pids = server.worker_pids()
        run_wrk(server.host, scripts[op], 8, s.warmup, s.scratch)
        for c in CONCURRENCY:
            r = run_wrk(server.host, scripts[op], c, s.seconds, s.scratch, pids)
            log(f"{server.name:<22} {op:<24} c={c:<3} {r.rps:9.0f} req/s  p50 {r.p50_ms:7.2f} ms  "
                f"p99 {r.p99_ms:7.2f} ms  errors {r.errors}  wrk cpu {r.wrk_cpu:.0%}  server cpu {r.server_cpu:.0%} "
                f"({r.cpu_us_per_request:.0f} us/req)")
            out.append(Cell(server.name, database, op, c, r))


def throughput_sigv4(server: Server, database: str, s: Settings, out: list[Cell]) -> None:
    """GetInferenceProfile against ``--auth strict``: every request's SigV4 signature verified, so the cost
    of verification shows beside the same operation in open mode."""
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    assert server.database_url is not None
    env = {**os.environ, **({"PYTHONPATH": server.pythonpath} if server.pythonpath else {})}
    made = subprocess.run(
        [str(MAIN_PYTHON), "-m", "outcrop", "keys", "create", "--account", "123456789012",
         "--database", server.database_url], check=True, capture_output=True, text=True, env=env,
    )
    key = json.loads(made.stdout)
    bedrock = boto3.client(
        "bedrock", region_name=REGION, endpoint_url=f"http://{server.host}",
        aws_access_key_id=key["accessKeyId"], aws_secret_access_key=key["secretAccessKey"],
    )
    copy_from = "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-express-v1"
    nonce = uuid.uuid4().hex[:8]
    ids = [
        bedrock.create_inference_profile(inferenceProfileName=f"s{nonce}-{i}", modelSource={"copyFrom": copy_from})[
            "inferenceProfileArn"
        ].rsplit("/", 1)[1]
        for i in range(20)
    ]
    creds = Credentials(key["accessKeyId"], key["secretAccessKey"])
    signed = []
    for pid in ids:
        request = AWSRequest("GET", f"http://{server.host}/inference-profiles/{pid}")
        SigV4Auth(creds, "bedrock", REGION).add_auth(request)
        signed.append((f"/inference-profiles/{pid}", {k: v for k, v in request.headers.items() if k != "host"}))
    script = signed_get_script(signed)
    pids = server.worker_pids()
    run_wrk(server.host, script, 8, s.warmup, s.scratch)
    for c in CONCURRENCY:
        r = run_wrk(server.host, script, c, s.seconds, s.scratch, pids)
        log(f"{server.name:<22} GetInferenceProfile (SigV4) c={c:<3} {r.rps:9.0f} req/s  errors {r.errors}")
        out.append(Cell(server.name, database, "GetInferenceProfile", c, r))


# -- List page vs. number of stored profiles -------------------------------------------------------------
def page_latency(server: Server, database: str, s: Settings, out: list[PageCell]) -> None:
    stored = 0
    for target in s.scale:
        assert server.database_url is not None
        t0 = time.perf_counter()
        seed_outcrop(server.database_url, SCALE_REGION, target - stored, stored)
        log(f"{server.name}: seeded {target - stored} profiles in {time.perf_counter() - t0:.1f} s")
        stored = target
        deep = stored // PAGE // 2  # the page that starts half-way down the list
        token, walked = token_at_page(server.host, SCALE_REGION, PAGE, deep)
        log(f"{server.name}: walked {deep} pages to page {deep + 1} in {walked:.2f} s")
        for label, path in (("first", list_path(PAGE)), (f"page {deep + 1}", list_path(PAGE, token))):
            r = run_wrk(server.host, path_script(SCALE_REGION, path), 1, s.page_seconds, s.scratch)
            log(f"{server.name:<22} List {stored:>7} stored, {label:<9} p50 {r.p50_ms:7.2f} ms  "
                f"p99 {r.p99_ms:7.2f} ms  errors {r.errors}")
            out.append(PageCell(server.name, database, stored, label, r))


def ministack_pages(server: Server, s: Settings, out: list[PageCell]) -> None:
    """ministack has no pagination: its "page" is the whole list, whatever maxResults says."""
    stored = 0
    for target in s.ministack_scale:
        t0 = time.perf_counter()
        create_over_http(server.host, SCALE_REGION, target - stored, prefix=f"s{stored}")
        log(f"ministack: created {target - stored} profiles over HTTP in {time.perf_counter() - t0:.1f} s")
        stored = target
        r = run_wrk(server.host, path_script(SCALE_REGION, list_path(PAGE)), 1, s.page_seconds, s.scratch)
        log(f"ministack              List {stored:>7} stored, first     p50 {r.p50_ms:7.2f} ms  "
            f"p99 {r.p99_ms:7.2f} ms  errors {r.errors}")
        out.append(PageCell(server.name, "memory", stored, "first (all)", r))


# -- report ----------------------------------------------------------------------------------------------
def machine() -> list[str]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    load = Path("/proc/loadavg").read_text().split()[:3]
    return [
        f"date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"nproc: {nproc}; CPU: {cpu}; memory: {mem_kb / 1024 / 1024:.1f} GiB; "
        f"load average before the run: {' '.join(load)}",
        f"Python {platform.python_version()} ({sys.executable}); uvicorn "
        f"{importlib.metadata.version('uvicorn')}; SQLAlchemy {importlib.metadata.version('sqlalchemy')}; "
        f"psycopg {importlib.metadata.version('psycopg')}",
    ]


def fmt_rps(x: float) -> str:
    return f"{x:,.0f}"


def cell_table(cells: list[Cell]) -> list[str]:
    lines = [
        "| operation | c | server | database | req/s | p50 ms | p99 ms | errors | wrk CPU | server CPU | "
        "server CPU us/req |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = {name: i for i, name in enumerate(OPS)}
    for cell in sorted(cells, key=lambda x: (order[x.op], x.connections)):
        r = cell.result
        lines.append(
            f"| {cell.op} | {cell.connections} | {cell.server} | {cell.database} | {fmt_rps(r.rps)} | "
            f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} | {r.wrk_cpu:.0%} | {r.server_cpu:.0%} | "
            f"{r.cpu_us_per_request:,.0f} |"
        )
    return lines


def page_table(pages: list[PageCell]) -> list[str]:
    lines = [
        "| server | database | profiles stored | page | p50 ms | p99 ms | req/s (c=1) | errors |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for p in pages:
        r = p.result
        lines.append(
            f"| {p.server} | {p.database} | {p.stored:,} | {p.page} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{fmt_rps(r.rps)} | {p.result.errors} |"
        )
    return lines


def find(cells: list[Cell], server: str, op: str, c: int) -> Result | None:
    return next((x.result for x in cells if x.server == server and x.op == op and x.connections == c), None)


def goal_table(cells: list[Cell], pages: list[PageCell], databases: list[str], scale: tuple[int, ...]) -> list[str]:
    lines = ["| goal | database | measured | target | met |", "|---|---|---:|---:|---|"]

    def row(goal: str, db: str, ratio: float | None, target: str, ok: bool | None, detail: str) -> None:
        shown = "n/a" if ratio is None else f"{ratio:.2f}x ({detail})"
        met = "n/a" if ok is None else ("yes" if ok else "**no**")
        lines.append(f"| {goal} | {db} | {shown} | {target} | {met} |")

    bare = find(cells, "bare ASGI", "GetInferenceProfile", 32)
    for db in databases:
        name = f"outcrop/{db}"
        get = find(cells, name, "GetInferenceProfile", 32)
        ratio = get.rps / bare.rps if get and bare and bare.rps else None
        detail = f"{fmt_rps(get.rps)} / {fmt_rps(bare.rps)} req/s" if get and bare else ""
        row("Get, c=32: outcrop ÷ bare callable", db, ratio, "≥ 0.33x", None if ratio is None else ratio >= 1 / 3,
            detail)
    signed, unsigned = (find(cells, n, "GetInferenceProfile", 32) for n in ("outcrop/sqlite+sigv4", "outcrop/sqlite"))
    if signed and unsigned and unsigned.rps:
        row("Get, c=32: strict mode (SigV4 verified) ÷ open mode", "sqlite", signed.rps / unsigned.rps,
            "(cost of verification)", None, f"{fmt_rps(signed.rps)} / {fmt_rps(unsigned.rps)} req/s; "
            f"{signed.cpu_us_per_request - unsigned.cpu_us_per_request:+,.0f} us CPU per request")
    for c in CONCURRENCY:
        mini = find(cells, "ministack", "CreateInferenceProfile", c)
        for db in databases:
            create = find(cells, f"outcrop/{db}", "CreateInferenceProfile", c)
            ratio = create.rps / mini.rps if create and mini and mini.rps else None
            detail = f"{fmt_rps(create.rps)} / {fmt_rps(mini.rps)} req/s" if create and mini else ""
            target = "≥ 2x" if c == 32 else "(≥ 2x at c=32)"
            row(f"Create, c={c}: outcrop (durable) ÷ ministack (memory)", db, ratio, target,
                None if ratio is None or c != 32 else ratio >= 2, detail)
    lo, hi = min(scale), max(scale)
    for db in databases:
        for kind in ("first", "deep"):
            def pick(n: int, db: str = db, kind: str = kind) -> Result | None:
                return next(
                    (p.result for p in pages if p.server == f"outcrop/{db}" and p.stored == n
                     and (p.page == "first") == (kind == "first")), None,
                )

            a, b = pick(lo), pick(hi)
            ratio = b.p50_ms / a.p50_ms if a and b and a.p50_ms else None
            detail = f"p50 {b.p50_ms:.2f} / {a.p50_ms:.2f} ms" if a and b else ""
            label = "first page" if kind == "first" else "half-way page"
            row(f"List {label}: p50 at {hi:,} ÷ p50 at {lo:,}", db, ratio, "≤ 2x",
                None if ratio is None else ratio <= 2, detail)
    return lines


def generator_lines(cells: list[Cell]) -> list[str]:
    bare = [c for c in cells if c.server == "bare ASGI"]
    others = [c for c in cells if c.server != "bare ASGI"]
    if not bare or not others:
        return []
    best_bare = max(bare, key=lambda c: c.result.rps)
    best_other = max(others, key=lambda c: c.result.rps)
    top_cpu = max(cells, key=lambda c: c.result.wrk_cpu)
    return [
        f"Load generator check: the same wrk scripts reach {fmt_rps(best_bare.result.rps)} req/s against the bare "
        f"callable ({best_bare.op}, c={best_bare.connections}), {best_bare.result.rps / best_other.result.rps:.1f}x "
        f"the fastest server cell ({best_other.server} {best_other.op}, c={best_other.connections}: "
        f"{fmt_rps(best_other.result.rps)} req/s); wrk used at most {top_cpu.result.wrk_cpu:.0%} of one core "
        f"({top_cpu.server}, {top_cpu.op}, c={top_cpu.connections}), and {max(c.result.wrk_cpu for c in others):.0%} "
        "in any cell against a real server.",
    ]


def render(cells: list[Cell], pages: list[PageCell], databases: list[str], s: Settings, facts: list[str],
           quick: bool) -> str:
    parts = [
        f"## {SECTION}",
        "",
        "Issue 2. `.venv/bin/python bench/control_plane/run.py [--quick]` "
        "(needs `bench/.venv-peers` with ministack and wrk; the script installs both when missing).",
        "",
        *[f"- {x}" for x in facts],
        f"- wrk -t1, closed loop, keep-alive; {s.seconds} s per cell after a {s.warmup} s warm-up per operation"
        f"{' (--quick)' if quick else ''}; List-page cells {s.page_seconds} s at c=1.",
        "- Get picks one of 100 application profiles at random per request; List is `type=APPLICATION`, "
        "`maxResults=100` over those 100 (one full page on every server); Create sends a unique name per "
        "request (Lua counter + random), no clientRequestToken.",
        "- outcrop acknowledges a Create only after its COMMIT (SQLite WAL `synchronous=FULL`, PostgreSQL "
        "`synchronous_commit=on`); ministack keeps everything in memory.",
        "- outcrop/ministack/bare run with 1 worker process each, one server at a time, on the same 2 cores as wrk "
        "(and as whatever else runs on the machine: see the load averages). CPU columns are CPU time over wall "
        "time (100% = one core) of wrk and of the server's process tree; the server's excludes PostgreSQL's own "
        "backends.",
        "",
        "### Throughput and latency",
        "",
        *cell_table(cells),
        "",
        *generator_lines(cells),
        "",
        "### One List page (`type=APPLICATION`, `maxResults=100`) against the number of stored profiles",
        "",
        "Profiles are seeded by direct inserts into outcrop's schema (ministack: created over HTTP; it has no "
        "pagination, so its one page is every profile). The half-way page is reached by walking nextTokens.",
        "",
        *page_table(pages),
        "",
        "### Goals",
        "",
        *goal_table(cells, pages, databases, s.scale),
        "",
    ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 s cells, List pages up to 10,000 profiles")
    parser.add_argument("--seconds", type=int, help="seconds per throughput cell (default 5, --quick 2)")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL cells")
    parser.add_argument("--no-readme", action="store_true", help="print the table only")
    parser.add_argument(
        "--source", default="HEAD",
        help="commit of outcrop to measure (exported from git, so edits in progress do not disturb the run), "
        "or 'worktree' for src/ as it is (default HEAD)",
    )
    args = parser.parse_args(argv)

    facts = machine()
    wrk = ensure_wrk()
    ministack = ensure_ministack()
    facts.append(f"load generator: {wrk}; peer: ministack {ministack} (hypercorn, in memory)")
    scratch = Path(tempfile.mkdtemp(prefix="outcrop-bench-"))
    source: Path | None = None
    if args.source == "worktree":
        facts.append("outcrop: the working tree's src/ (uncommitted edits included)")
    else:
        source, rev = snapshot_source(args.source, scratch / "source")
        sys.path.insert(0, str(source))  # the seeding below imports outcrop.store from the same commit
        facts.append(f"outcrop: commit {rev} (exported with git archive)")
    s = Settings(
        seconds=args.seconds or (2 if args.quick else 5),
        warmup=1,
        page_seconds=1 if args.quick else 3,
        scale=(1_000, 10_000) if args.quick else (1_000, 10_000, 100_000),
        ministack_scale=(1_000,) if args.quick else (1_000, 10_000),
        scratch=scratch,
    )
    databases = ["sqlite"]
    pg_urls: list[str] = []
    if not args.no_postgres:
        reason = pg_available()
        if reason:
            log(f"PostgreSQL skipped: {reason}")
        else:
            databases.append("postgresql")
            facts.append(pg_settings() + " on 127.0.0.1, same machine")
    cells: list[Cell] = []
    pages: list[PageCell] = []
    try:
        with running(lambda: start_bare(scratch)) as srv:
            throughput(srv, "—", s, cells)
        with running(lambda: start_ministack(scratch)) as srv:
            throughput(srv, "memory", s, cells)
        with running(lambda: start_ministack(scratch)) as srv:
            ministack_pages(srv, s, pages)
        for db in databases:
            if db == "sqlite":
                urls = (f"sqlite:///{scratch / 'throughput.db'}", f"sqlite:///{scratch / 'pages.db'}")
            else:
                urls = (create_pg_database(), create_pg_database())
                pg_urls.extend(urls)
            with running(lambda u=urls[0], d=db: start_outcrop(u, scratch, d, source)) as srv:
                throughput(srv, db, s, cells)
            with running(lambda u=urls[1], d=db: start_outcrop(u, scratch, d, source)) as srv:
                page_latency(srv, db, s, pages)
        strict_url = f"sqlite:///{scratch / 'strict.db'}"
        with running(lambda: start_outcrop(strict_url, scratch, "sqlite+sigv4", source, ["--auth", "strict"])) as srv:
            throughput_sigv4(srv, "sqlite", s, cells)
    finally:
        for url in pg_urls:
            try:
                drop_pg_database(url)
            except Exception as e:  # leave the run's result intact; say what was left behind
                log(f"could not drop {url}: {e}")
        shutil.rmtree(scratch, ignore_errors=True)

    facts.append("load average after the run: " + " ".join(Path("/proc/loadavg").read_text().split()[:3]))
    section = render(cells, pages, databases, s, facts, args.quick)
    print(section)
    if not args.no_readme:
        update_section(section)
        log(f"wrote {README}")
    return 0


if __name__ == "__main__":
    os.chdir(HERE.parent.parent)
    raise SystemExit(main())
