"""What every benchmark shares: the facts of the machine, and rewriting its own section of ``bench/README.md``.

Each ``bench/<name>/run.py`` puts ``bench/`` on ``sys.path`` and imports this module.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
import subprocess
import sys
import time
from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"
PREAMBLE = "# Benchmarks\n\nOne section per benchmark, each rewritten by its own script with its latest figures.\n"


def update_section(section: str, readme: Path = README) -> None:
    """Replace the section whose first line (``## name``) ``section`` starts with, up to the next ``## ``
    heading, or append it; the rest of the file is kept as it is."""
    header = section.lstrip("\n").splitlines()[0].strip()
    if not header.startswith("## "):
        raise ValueError(f"a section starts with its '## ' heading, not {header!r}")
    text = readme.read_text() if readme.exists() else PREAMBLE
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == header), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section.strip("\n") + "\n"
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "\n".join([*lines[:start], *section.strip("\n").splitlines(), "", *lines[end:]]).rstrip("\n") + "\n"
    readme.write_text(new)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def machine(*packages: str) -> list[str]:
    """Date, cores, CPU, memory, load, and the versions of Python and of ``packages``."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    mem_kb = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:")), 0)
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    versions = "; ".join(f"{p} {importlib.metadata.version(p)}" for p in packages)
    return [
        f"date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"nproc: {nproc}; CPU: {cpu}; memory: {mem_kb / 1024 / 1024:.1f} GiB",
        f"uptime before the run: {uptime()}",
        steadiness(),
        f"Python {platform.python_version()} ({sys.executable})" + (f"; {versions}" if versions else ""),
    ]


def steadiness(seconds: float = 4.0) -> str:
    """How steadily this machine runs Python, before any server starts: the same small piece of work
    (20,000 additions) timed over and over, with a 2 ms rest between (as a server's event loop works in
    bursts). On a VM whose host is busy, some runs take several times the median while the thread's own
    CPU clock says it ran the whole time: a latency percentile at or beyond that share is the machine's."""

    def unit() -> int:
        total = 0
        for i in range(20_000):
            total += i
        return total

    times: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        unit()
        times.append(time.perf_counter() - started)
        time.sleep(0.002)
    times.sort()
    n = len(times)
    p50 = times[n // 2]
    slow = sum(t > 2 * p50 for t in times) / n
    return (f"steadiness: a fixed piece of Python work, {n:,} runs: p50 {p50 * 1e3:.2f} ms, p99 "
            f"{times[int(n * 0.99)] / p50:.1f}x p50, p99.9 {times[int(n * 0.999)] / p50:.1f}x; "
            f"{slow:.1%} of runs over 2x p50")


# The model behind bench/runtime and bench/metering: ``bench/runtime/backend.py`` (an OpenAI-compatible
# server answering every completion after 20 ms), importable from this folder.
BACKEND_DIR = Path(__file__).resolve().parent / "runtime"


OUTCROP_HTTP = "outcrop.server.http1:HTTP1"  # the HTTP/1.1 protocol ``outcrop serve`` runs


def asgi_command(python: Path, app: str, port: int, workers: int = 1, http: str = OUTCROP_HTTP) -> list[str]:
    """A bare ASGI callable under the server ``outcrop serve`` runs on (uvicorn, uvloop, outcrop's own
    HTTP/1.1 protocol, no access log, no WebSocket, on loopback), or with another ``--http``."""
    return [str(python), "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
            "--loop", "uvloop", "--http", http, "--ws", "none", "--lifespan", "on", "--no-access-log",
            "--no-server-header", "--log-level", "warning"]


def backend_command(python: Path, port: int) -> list[str]:
    """The backend, as both benchmarks start it (1 worker, loopback); ``backend:app`` from BACKEND_DIR."""
    # A typical Python OpenAI-compatible server: uvicorn's own httptools protocol.
    return asgi_command(python, "backend:app", port, http="httptools")


def backend_config(backend_url: str) -> str:
    """outcrop's config serving every model from the backend at ``backend_url`` (its OpenAI API)."""
    return f'[[deployments]]\nmodel = "*"\nbackend = "openai"\nurl = "{backend_url}/v1"\nbackend_model = "bench"\n'
