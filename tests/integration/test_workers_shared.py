"""What the workers of one ``outcrop serve --workers 2`` share: a deployment's limits, and the figures of
``/metrics`` and ``/_outcrop/routing``, which are the server's whatever worker answers the scrape.

Each call opens a new connection, so calls spread over both workers (the kernel hands each connection to
either). The default is one worker per core.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import ServerProcess
from tests.integration.runtime_helpers import HAIKU, USER_HELLO

LIMITED = f"""
[[deployments]]
model = "{HAIKU}"
backend = "builtin"
ttft_ms = 1500
max_concurrency = 2
"""


def _converse(server: ServerProcess) -> tuple[int, str]:
    r = httpx.post(f"{server.url}/model/{HAIKU}/converse", json={"messages": USER_HELLO}, timeout=60,
                   headers={"connection": "close"})
    return r.status_code, r.headers.get("x-amzn-errortype", "")


def _routing(server: ServerProcess) -> dict:
    r = httpx.get(server.url + "/_outcrop/routing", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _two_workers(server_factory: Callable[..., ServerProcess], config: str | None = None) -> ServerProcess:
    server = server_factory(config=config, args=["--workers", "2"])
    server.wait_for_workers(2)
    deadline = time.monotonic() + 30
    while _routing(server)["workers"] < 2:  # both have their slot
        assert time.monotonic() < deadline, server.log_text()[-3000:]
        time.sleep(0.05)
    return server


def test_max_concurrency_holds_for_the_server_not_each_worker(server_factory: Callable[..., ServerProcess]):
    server = _two_workers(server_factory, LIMITED)
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: _converse(server), range(10)))
    # All ten overlap (each takes 1.5 s): two are admitted, the rest refused at once. Each worker on its own
    # would have admitted two.
    assert sorted(answers) == [(200, "")] * 2 + [(429, "ThrottlingException")] * 8, answers
    (deployment,) = _routing(server)["deployments"]
    assert deployment["outstanding"] == 0
    assert deployment["attempts"] == {"success": 2}


def test_a_killed_workers_requests_stop_holding_room(server_factory: Callable[..., ServerProcess]):
    server = _two_workers(server_factory, LIMITED.replace("max_concurrency = 2", "max_concurrency = 1")
                          .replace("ttft_ms = 1500", "ttft_ms = 0"))
    chaos = httpx.post(server.url + "/_outcrop/chaos", json={"region": "*", "fault": "latency", "latencyMs": 60000})
    assert chaos.status_code == 201, chaos.text
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(_converse, server)  # admitted, then held by the chaos latency
        deadline = time.monotonic() + 30
        while sum(d["outstanding"] for d in _routing(server)["deployments"]) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert _converse(server) == (429, "ThrottlingException")  # the one room is taken, in either worker
        assert server.proc is not None
        for pid in _children(server.proc.pid):
            os.kill(pid, signal.SIGKILL)  # its lease is never released
        with contextlib.suppress(httpx.HTTPError):  # the connection died with its worker
            held.result(timeout=60)
    assert httpx.delete(server.url + "/_outcrop/chaos", timeout=30).status_code == 200
    deadline = time.monotonic() + 30
    while _routing(server)["workers"] < 2:  # uvicorn started both again
        assert time.monotonic() < deadline, server.log_text()[-3000:]
        time.sleep(0.1)
    assert {_converse(server) for _ in range(6)} == {(200, "")}


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def _invocations(text: str) -> float:
    pattern = rf'^outcrop_invocations_total\{{model_id="{re.escape(HAIKU)}",region="us-east-1"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_metrics_and_routing_are_the_whole_servers_whichever_worker_answers(
    server_factory: Callable[..., ServerProcess],
):
    server = _two_workers(server_factory)
    for _ in range(20):
        assert _converse(server) == (200, "")
    for _ in range(6):  # scrapes on fresh connections: answered by either worker, always the same sums
        text = httpx.get(server.url + "/metrics", headers={"connection": "close"}, timeout=30).text
        assert _invocations(text) == 20, text
        status = _routing(server)
        assert status["workers"] == 2
        assert sum(d["attempts"].get("success", 0) for d in status["deployments"]) == 20


def test_by_default_a_server_runs_one_worker_per_core_up_to_eight(server_factory: Callable[..., ServerProcess]):
    cores = min(len(os.sched_getaffinity(0)), 8)
    server = server_factory(OUTCROP_WORKERS="0")
    server.wait_for_workers(cores)
    assert f"{cores} worker" in Path(server.data_dir / f"server-{server.port}.log").read_text()
    deadline = time.monotonic() + 30
    while _routing(server)["workers"] < cores:
        assert time.monotonic() < deadline, server.log_text()[-3000:]
        time.sleep(0.05)


def test_connections_are_spread_over_the_workers(server_factory: Callable[..., ServerProcess]):
    """Each worker listens on a socket of its own (SO_REUSEPORT): on one shared socket, the first worker
    to wake took nearly every connection opened at once."""
    server = _two_workers(server_factory)
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(32)]
    try:
        deadline = time.monotonic() + 30
        while True:
            out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{server.port} )"],
                                 capture_output=True, text=True, check=True).stdout
            per_worker = collections.Counter(re.findall(r"pid=(\d+)", out))
            if sum(per_worker.values()) >= 32 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        # Hashed over two sockets, fewer than 6 of 32 on one worker happens once in about 10,000 runs.
        assert len(per_worker) == 2 and min(per_worker.values()) >= 6, per_worker
    finally:
        for s in held:
            s.close()


def test_a_port_in_use_is_refused_not_shared(server_factory: Callable[..., ServerProcess], tmp_path: Path):
    server = _two_workers(server_factory)
    other = subprocess.run(
        [sys.executable, "-m", "outcrop", "serve", "--port", str(server.port), "--workers", "2"],
        env={**os.environ, "OUTCROP_DATA_DIR": str(tmp_path / "other")}, capture_output=True, text=True, timeout=60,
    )
    assert other.returncode == 2
    assert "Address already in use" in other.stderr


def _workers_of(server: ServerProcess) -> list[int]:
    """The worker processes of a server (its supervisor's children that serve, not multiprocessing's
    resource tracker)."""
    assert server.proc is not None
    return [pid for pid in _children(server.proc.pid)
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def _scraped(server: ServerProcess) -> float:
    return _invocations(httpx.get(server.url + "/metrics", headers={"connection": "close"}, timeout=30).text)


def _attempts(server: ServerProcess) -> int:
    return sum(sum(d["attempts"].values()) for d in _routing(server)["deployments"])


def test_the_servers_counts_do_not_fall_when_a_worker_dies(server_factory: Callable[..., ServerProcess]):
    server = _two_workers(server_factory)
    for _ in range(20):
        assert _converse(server) == (200, "")
    for _ in range(4):  # each worker has answered a scrape (and written what it counted)
        assert _scraped(server) == 20
        assert _attempts(server) == 20
    os.kill(_workers_of(server)[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:  # dead, then replaced: Prometheus must never see the sum fall (it would read a reset)
        assert _scraped(server) == 20
        assert _attempts(server) == 20
        if _routing(server)["workers"] == 2 and len(_workers_of(server)) == 2:
            break
        assert time.monotonic() < deadline, server.log_text()[-3000:]
        time.sleep(0.1)
    for _ in range(4):
        assert _scraped(server) == 20
        assert _attempts(server) == 20


def test_two_servers_on_one_data_directory_keep_their_figures_apart(
    server_factory: Callable[..., ServerProcess], tmp_path: Path,
):
    shared = tmp_path / "shared-data"
    shared.mkdir()
    first = server_factory(args=["--workers", "2"], OUTCROP_DATA_DIR=str(shared))
    second = server_factory(args=["--workers", "2"], OUTCROP_DATA_DIR=str(shared))
    for server, calls in ((first, 5), (second, 2)):
        deadline = time.monotonic() + 30
        while _routing(server)["workers"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for _ in range(calls):
            assert _converse(server) == (200, "")
    assert _routing(first)["workers"] == 2 and _routing(second)["workers"] == 2
    assert _scraped(first) == 5 and _scraped(second) == 2
