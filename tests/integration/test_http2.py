"""HTTP/1.1 and h2c (HTTP/2 cleartext, prior knowledge) on the same port.

The JS v3 runtime client opens h2c with prior knowledge against an ``http://`` endpoint; the server
must answer it. httpx can speak HTTP/2 only with the ``h2`` package, so that is used if installed,
else ``curl --http2-prior-knowledge``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess

import httpx
import pytest

HAS_H2 = importlib.util.find_spec("h2") is not None
CURL = shutil.which("curl")


def h2c_get(url: str) -> tuple[str, int, bytes]:
    """GET over HTTP/2 with prior knowledge: (http version, status, body)."""
    if HAS_H2:
        with httpx.Client(http1=False, http2=True, timeout=10) as client:
            r = client.get(url)
            return r.http_version, r.status_code, r.content
    if CURL is None:
        pytest.skip("neither the h2 package (for httpx) nor curl is available to speak h2c")
    proc = subprocess.run(
        [CURL, "-sS", "--http2-prior-knowledge", "--max-time", "10", "-o", "-", "-w", "\n%{http_version} %{http_code}",
         url],
        capture_output=True, timeout=30,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    body, _, trailer = proc.stdout.rpartition(b"\n")
    version, code = trailer.decode().split()
    return f"HTTP/{version}", int(code), body


def test_health_answers_over_h2c_prior_knowledge_and_http1_on_the_same_port(server_factory):
    url = server_factory().url + "/_outcrop/health"
    version, status, body = h2c_get(url)
    assert version == "HTTP/2"
    assert status == 200
    assert json.loads(body) == {"status": "ok"}

    r = httpx.get(url, timeout=10)
    assert r.http_version == "HTTP/1.1"
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
