"""Time to first byte of streamed answers: a small asyncio HTTP/1.1 client, closed loop, keep-alive.

    python ttfb.py HOST:PORT PATH BODY_FILE CONNECTIONS SECONDS [AUTHORIZATION]

Each of ``CONNECTIONS`` connections POSTs the body, reads the head, notes the moment the first byte of
the body arrives (the first chunk's size line of a chunked answer), reads the rest of the answer and
sends the next request. Prints one JSON line: per-request TTFB and total-time percentiles, the count of
answers that were not 200, and this process's own CPU time over wall time (so a table can show that the
client was not the bottleneck). Runs on uvloop when it is installed, as the servers do.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from pathlib import Path


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def _answer(reader: asyncio.StreamReader) -> tuple[int, float]:
    """Read one whole answer; return its status and the perf_counter time of its first body byte."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        line = await reader.readline()
        first = time.perf_counter()
        while True:
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass  # trailers
                return status, first
            await reader.readexactly(size + 2)
            line = await reader.readline()
    length = 0
    for raw in lower.split(b"\r\n"):
        if raw.startswith(b"content-length:"):
            length = int(raw.split(b":", 1)[1])
    if length == 0:
        return status, time.perf_counter()
    await reader.readexactly(1)
    first = time.perf_counter()
    await reader.readexactly(length - 1)
    return status, first


async def _connection(host: str, port: int, request: bytes, until: float, out: dict[str, list[float]]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(request)
            status, first = await _answer(reader)
            done = time.perf_counter()
            if status != 200:
                out["errors"].append(status)
                continue
            out["ttfb"].append((first - started) * 1000)
            out["total"].append((done - started) * 1000)
    finally:
        writer.close()


async def measure(
    address: str, path: str, body: bytes, connections: int, seconds: float, authorization: str = ""
) -> dict[str, float]:
    host, port = address.rsplit(":", 1)
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n{auth}"
        f"Accept: */*\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    out: dict[str, list[float]] = {"ttfb": [], "total": [], "errors": []}
    wall0, cpu0 = time.perf_counter(), _cpu()
    until = wall0 + seconds
    await asyncio.gather(*(_connection(host, int(port), request, until, out) for _ in range(connections)))
    wall = time.perf_counter() - wall0
    return {
        "requests": len(out["ttfb"]),
        "seconds": wall,
        "errors": len(out["errors"]),
        "ttfb_p50_ms": percentile(out["ttfb"], 50),
        "ttfb_p99_ms": percentile(out["ttfb"], 99),
        "total_p50_ms": percentile(out["total"], 50),
        "total_p99_ms": percentile(out["total"], 99),
        "client_cpu": (_cpu() - cpu0) / wall if wall else 0.0,
    }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    address, path, body_file, connections, seconds = sys.argv[1:6]
    authorization = sys.argv[6] if len(sys.argv) > 6 else ""
    run = asyncio.run
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        pass
    result = run(measure(address, path, Path(body_file).read_bytes(), int(connections), float(seconds), authorization))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
