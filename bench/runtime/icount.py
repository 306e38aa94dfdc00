"""Instructions per Converse: outcrop under callgrind, a count that does not move with the machine's speed.

    .venv/bin/python bench/runtime/icount.py [--requests N] [SOURCE ...]

On a shared VM the CPU time a request costs moves by ±40% from one minute to the next, so a change of a
few percent cannot be seen in a throughput run. Instructions retired can: for the same build and inputs
they repeat to within ~1% (timers that fire by wall time account for the rest). Each SOURCE (a
directory holding ``src/outcrop``, or ``floor`` for ``proxy.py`` on outcrop's HTTP server; default: this
checkout) is started under ``valgrind --tool=callgrind`` with instrumentation off, warmed up with 50
calls, then counted over ``--requests`` Converse calls on an application profile, one connection, one
after another, to the same 20 ms OpenAI-compatible backend as ``run.py``. It prints instructions per
request; compare builds within one run. Needs valgrind (``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as rt  # noqa: E402  (bench/runtime/run.py: its servers, backend and request bodies)


def _count(server: rt.Server, path: str, body: bytes, out: Path, requests: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)

    def one() -> None:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"POST {path} answered {answer.status}: {data[:300]!r}")

    pid = str(server.proc.pid)
    for _ in range(50):
        one()
    subprocess.run(["callgrind_control", "--instr=on", pid], capture_output=True, check=True)
    subprocess.run(["callgrind_control", "--zero", pid], capture_output=True, check=True)
    for _ in range(requests):
        one()
    subprocess.run(["callgrind_control", "--dump", pid], capture_output=True, check=True)
    conn.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        totals = [int(line.split()[1]) for dump in out.parent.glob(out.name + ".*")
                  for line in dump.read_text(errors="replace").splitlines()
                  if line.startswith(("summary:", "totals:"))]
        if totals:
            return max(totals) // requests
        time.sleep(0.2)
    raise RuntimeError(f"callgrind wrote no dump next to {out}")


def measure(source: str, backend: rt.Server, work: Path, requests: int) -> int:
    work.mkdir()
    port = rt.free_port()
    out = work / "callgrind.out"
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    if source == "floor":
        cmd = [*valgrind, *rt.asgi_command(rt.MAIN_PYTHON, "proxy:app", port)]
        env = {"PYTHONPATH": str(HERE), "BACKEND_URL": backend.url}
        server = rt.spawn("floor", cmd, env, work, port, "/", timeout=600)
        path, body = "/", b"{}"
    else:
        config = work / "outcrop.toml"
        config.write_text(rt.backend_config(backend.url))
        cmd = [*valgrind, str(rt.MAIN_PYTHON), "-m", "outcrop", "serve", "--port", str(port), "--database",
               f"sqlite:///{work / 'outcrop.db'}", "--config", str(config), "--workers", "1"]  # valgrind follows one process
        env = {"OUTCROP_DATA_DIR": str(work), "OUTCROP_LOG_LEVEL": "warning",
               "PYTHONPATH": str(Path(source).resolve() / "src")}
        server = rt.spawn("outcrop", cmd, env, work, port, "/_outcrop/health", timeout=600)
        arn = rt.create_profile(server)
        path, body = "/model/" + urllib.parse.quote(arn, safe="") + "/converse", rt.CONVERSE_BODY.encode()
    try:
        return _count(server, path, body, out, requests)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("sources", nargs="*", default=[str(rt.REPO)])
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    work = Path(tempfile.mkdtemp(prefix="outcrop-icount-"))
    backend = rt.start_backend(work)
    try:
        print(f"| source | instructions per request ({args.requests} requests) |\n|---|---:|")
        for i, source in enumerate(args.sources):
            started = time.monotonic()
            n = measure(source, backend, work / f"s{i}", args.requests)
            print(f"| {source} | {n:,} |", flush=True)
            rt.log(f"{source}: {n:,} instructions per request ({time.monotonic() - started:.0f} s)")
    finally:
        backend.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
