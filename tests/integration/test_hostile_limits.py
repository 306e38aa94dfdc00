"""The hostile-input limits as settings: body size, header size, JSON depth and slow clients.

One server with small limits serves the module (``max_request_bytes`` 4096, ``max_header_bytes`` 16384,
2-second header and body timeouts); each test talks raw HTTP/1.1 to it so it controls every byte.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from outcrop.config import ConfigError, load_config
from tests.conftest import ServerProcess, running_server

HAIKU_FM = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"
LIMITS = """
max_request_bytes = 4096
max_header_bytes = 16384
header_read_timeout_seconds = 2
body_read_timeout_seconds = 2
"""


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("limits"), LIMITS) as srv:
        yield srv


def exchange(srv: ServerProcess, head: bytes, body: bytes = b"", timeout: float = 10.0) -> bytes:
    """Send ``head`` (and ``body``) on a fresh connection and return everything the server sends back."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout) as s:
        s.sendall(head + body)
        return read_until_closed(s)


def read_until_closed(s: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := s.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def aws_error(reply: bytes) -> tuple[int, str, str]:
    """(status, x-amzn-ErrorType, message) of a raw HTTP answer."""
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers["x-amzn-errortype"], json.loads(body)["message"]


def create_head(length: int | None, extra: bytes = b"") -> bytes:
    framing = b"Transfer-Encoding: chunked\r\n" if length is None else b"Content-Length: %d\r\n" % length
    return (b"POST /inference-profiles HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\n" + framing + extra + b"\r\n")


def served_quickly(srv: ServerProcess) -> float:
    start = time.monotonic()
    r = httpx.get(srv.url + "/inference-profiles", timeout=5)
    assert r.status_code == 200
    return time.monotonic() - start


def test_declared_oversized_body_is_413_before_a_byte_of_it_is_sent(limited):
    reply = exchange(limited, create_head(10**9))  # no body at all: the answer cannot wait for it
    status, code, message = aws_error(reply)
    assert (status, code) == (413, "RequestEntityTooLargeException")
    assert "4096 bytes" in message and "max_request_bytes" in message
    served_quickly(limited)


def test_chunked_body_over_the_limit_is_413(limited):
    chunk = b"x" * 3000
    body = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2 + b"0\r\n\r\n"
    status, code, _ = aws_error(exchange(limited, create_head(None), body))
    assert (status, code) == (413, "RequestEntityTooLargeException")


def test_body_within_the_limit_is_served(limited):
    body = json.dumps({"inferenceProfileName": "small", "modelSource": {"copyFrom": HAIKU_FM}}).encode()
    reply = exchange(limited, create_head(len(body)), body)
    assert reply.startswith(b"HTTP/1.1 201")


@pytest.mark.parametrize("depth", [200, 1025, 100_000])
def test_json_nested_deeper_than_200_is_a_clear_400(limited, depth):
    body = b'{"tags":' + b"[" * depth + b"]" * depth + b"}"
    body = body[:4000] if len(body) > 4000 else body  # stay under max_request_bytes: still too deep
    status, code, message = aws_error(exchange(limited, create_head(len(body)), body))
    assert (status, code) == (400, "SerializationException")
    assert "deeper than 200 levels" in message or "not valid JSON" in message


def test_json_depth_error_names_the_limit(limited):
    # 200 levels is the most a request may nest: what it carries is written again, deeper, into answers and
    # backend calls, and orjson writes at most 254.
    for depth, refused in ((200, False), (201, True), (1100, True)):
        body = b"[" * depth + b"]" * depth
        status, code, message = aws_error(exchange(limited, create_head(len(body)), body))
        assert ((status, code, message) == (400, "SerializationException",
                                            "The request body nests JSON arrays and objects deeper than 200 levels.")) \
            == refused, (depth, code, message)


def test_headers_over_max_header_bytes_are_refused_and_the_server_stays_up(limited):
    big = b"X-Big: " + b"a" * 20_000 + b"\r\n"
    reply = exchange(limited, b"GET /inference-profiles HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + big + b"\r\n")
    assert reply == b"" or reply.split(b" ", 2)[1] in (b"400", b"413", b"431")
    headers = {"x-fine": "a" * 12_000}  # larger than hyper's smallest buffer, under the setting
    assert httpx.get(limited.url + "/inference-profiles", headers=headers, timeout=5).status_code == 200


def test_slow_loris_sending_headers_byte_by_byte_is_cut_off_while_others_are_served(limited):
    head = b"GET /inference-profiles HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"s" * 200 + b"\r\n\r\n"
    outcome: dict[str, float | bytes] = {}

    def loris() -> None:
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", limited.port), timeout=15) as s:
            try:
                for byte in head:
                    s.sendall(bytes([byte]))
                    time.sleep(0.05)  # 250 bytes: 12 s if never cut off
                outcome["reply"] = read_until_closed(s)
            except (BrokenPipeError, ConnectionResetError):
                outcome["reply"] = b""
        outcome["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=loris)
    thread.start()
    while thread.is_alive() and "elapsed" not in outcome:
        assert served_quickly(limited) < 2.0
        time.sleep(0.1)
    thread.join(20)
    assert outcome["elapsed"] < 2 + 3, outcome  # header_read_timeout_seconds = 2, with slack for a busy machine
    assert not bytes(outcome["reply"]).startswith(b"HTTP/1.1 200")


def test_a_body_that_stops_arriving_is_408_after_body_read_timeout(limited):
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", limited.port), timeout=15) as s:
        s.sendall(create_head(1000) + b'{"inferenceProfileName": ')  # and then nothing
        status, code, _ = aws_error(read_until_closed(s))
    assert (status, code) == (408, "RequestTimeoutException")
    assert time.monotonic() - start < 2 + 3
    served_quickly(limited)


@pytest.mark.parametrize("setting", ["max_header_bytes = 100", "max_request_bytes = 0",
                                     "header_read_timeout_seconds = 0", "body_read_timeout_seconds = -1"])
def test_limits_out_of_range_are_config_errors(tmp_path, setting):
    path = tmp_path / "bad.toml"
    path.write_text(setting + "\n")
    with pytest.raises(ConfigError):
        load_config(path)
