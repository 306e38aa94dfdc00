"""The HTTP server itself (``outcrop.server``): h2c beside HTTP/1.1, flow control, limits, shutdown, logs.

A raw HTTP/2 client built on the ``h2`` package (a dependency of outcrop's) drives the h2c cases, so each
test controls the client's windows, frame by frame; the HTTP/1.1 cases talk raw bytes over a socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import httpx
import pytest
from botocore.eventstream import EventStreamBuffer

from outcrop.config import ConfigError, load_config
from outcrop.server.http1 import PREFACE
from tests.conftest import ServerProcess, running_server

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
CONVERSE = json.dumps({"messages": [{"role": "user", "content": [{"text": "Hello there"}]}]}).encode()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("protocols"), "max_header_bytes = 16384\nheader_read_timeout_seconds = 2\n",
                        OUTCROP_LOG_FORMAT="json") as server:
        yield server


class H2Client:
    """One h2c connection (prior knowledge); ``window`` is the initial stream window it advertises."""

    def __init__(self, port: int, window: int = 65535, auto_ack: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.conn.initiate_connection()
        self.auto_ack = auto_ack
        self.resets: dict[int, int] = {}  # stream -> error code of the server's RST_STREAM
        self.flush()

    def flush(self) -> None:
        if data := self.conn.data_to_send():
            self.sock.sendall(data)

    def request(self, method: str, path: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None,
                end: bool = True) -> int:
        sid = self.conn.get_next_available_stream_id()
        head = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "localhost"),
                *(headers or [])]
        if body:
            head.append(("content-length", str(len(body))))
        self.conn.send_headers(sid, [(k.encode(), v.encode()) for k, v in head], end_stream=not body and end)
        self.flush()
        if body:
            self.send_body(sid, body, end)
        return sid

    def send_body(self, sid: int, body: bytes, end: bool = True) -> None:
        while body:
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if room <= 0:
                self.pump()  # wait for the server to open the window
                continue
            self.conn.send_data(sid, body[:room])
            body = body[room:]
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def pump(self) -> list[h2.events.Event]:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        events = self.conn.receive_data(data)
        for e in events:
            if isinstance(e, h2.events.StreamReset):
                self.resets[e.stream_id] = e.error_code
            if isinstance(e, h2.events.DataReceived) and self.auto_ack:
                self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
        self.flush()
        return events

    def response(self, sid: int, deadline: float = 15.0) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = 0, {}, b""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            for e in self.pump():
                if getattr(e, "stream_id", None) != sid:
                    continue
                if isinstance(e, h2.events.ResponseReceived):
                    headers = {k.decode(): v.decode() for k, v in e.headers}
                    status = int(headers[":status"])
                elif isinstance(e, h2.events.DataReceived):
                    body += e.data
                elif isinstance(e, h2.events.StreamEnded):
                    return status, headers, body
                elif isinstance(e, h2.events.StreamReset):
                    raise AssertionError(f"stream {sid} was reset: {e.error_code!r}")
        raise AssertionError(f"no complete answer on stream {sid}")

    def close(self) -> None:
        self.sock.close()


def h2_exchange(port: int, method: str, path: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None,
                window: int = 65535) -> tuple[int, dict[str, str], bytes]:
    """One request on a new h2c connection: (status, headers, body) of its answer."""
    client = H2Client(port, window=window)
    try:
        return client.response(client.request(method, path, body, headers))
    finally:
        client.close()


def test_h2c_converse_answers_like_http1(srv):
    status, headers, body = h2_exchange(srv.port, "POST", f"/model/{HAIKU}/converse", CONVERSE,
                                        [("content-type", "application/json")])
    assert status == 200, body
    assert headers["x-amzn-requestid"]
    over_http1 = httpx.post(f"{srv.url}/model/{HAIKU}/converse", content=CONVERSE, timeout=10).json()
    assert json.loads(body)["output"] == over_http1["output"]  # the builtin model is deterministic


def test_h2c_request_body_larger_than_the_window_is_read_whole(srv):
    """The server opens the client's window as the app reads: a 200 kB body gets through a 64 kB window."""
    text = "word " * 40_000
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": text}]}]}).encode()
    assert len(body) > 3 * 65535
    status, _, answer = h2_exchange(
        srv.port, "POST", f"/model/{HAIKU}/count-tokens", json.dumps({"input": {"converse": json.loads(body)}}).encode(),
        [("content-type", "application/json")])
    assert status == 200, answer
    assert json.loads(answer)["inputTokens"] >= 40_000  # one per word, by the builtin rule


def test_h2c_answer_waits_for_the_clients_window_updates(srv):
    """A client with a 1 kB window gets the whole ListFoundationModels answer, one window at a time."""
    status, _, body = h2_exchange(srv.port, "GET", "/foundation-models", window=1024)
    assert status == 200
    assert len(body) > 10 * 1024
    assert json.loads(body)["modelSummaries"]


def test_h2c_answer_stalled_on_a_window_resumes_when_the_client_raises_its_initial_window(srv):
    """SETTINGS_INITIAL_WINDOW_SIZE raised mid-answer opens every stream's window, with no WINDOW_UPDATE."""
    client = H2Client(srv.port, window=512, auto_ack=False)
    try:
        sid = client.request("GET", "/foundation-models")
        body = b""
        deadline = time.monotonic() + 10
        while len(body) < 512 and time.monotonic() < deadline:
            body += b"".join(e.data for e in client.pump() if isinstance(e, h2.events.DataReceived))
        assert len(body) == 512  # the stream's window, and no more
        client.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 22})
        client.flush()
        client.auto_ack = True
        _, _, rest = client.response(sid)
    finally:
        client.close()
    assert json.loads(body + rest)["modelSummaries"]


def test_h2c_converse_stream_frames_decode(srv):
    status, headers, body = h2_exchange(srv.port, "POST", f"/model/{HAIKU}/converse-stream", CONVERSE,
                                        [("content-type", "application/json")])
    assert status == 200
    assert headers["content-type"] == "application/vnd.amazon.eventstream"
    frames = EventStreamBuffer()
    frames.add_data(body)
    events = [f.headers[":event-type"] for f in frames]
    assert events[0] == "messageStart" and events[-1] == "metadata"


def test_h2c_goaway_from_the_client_still_lets_its_open_stream_finish(srv):
    """The JS SDK's NodeHttp2Handler closes its session (GOAWAY) as soon as an answer begins."""
    client = H2Client(srv.port)
    try:
        sid = client.request("POST", f"/model/{HAIKU}/converse-stream", CONVERSE,
                             [("content-type", "application/json")])
        client.conn.close_connection(last_stream_id=0)
        client.flush()
        client.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN  # to read the answer on
        status, _, body = client.response(sid)
    finally:
        client.close()
    assert status == 200
    frames = EventStreamBuffer()
    frames.add_data(body)
    assert [f.headers[":event-type"] for f in frames][-1] == "metadata"


def test_sigterm_lets_an_open_h2c_stream_finish_and_refuses_new_ones(server_factory):
    slow = '[[deployments]]\nmodel = "*"\nbackend = "builtin"\nttft_ms = 300\ntokens_per_second = 40\n'
    server = server_factory(config=slow)
    client = H2Client(server.port)
    try:
        sid = client.request("POST", f"/model/{HAIKU}/converse-stream", CONVERSE,
                             [("content-type", "application/json")])
        time.sleep(0.2)
        assert server.proc is not None
        os.killpg(server.proc.pid, signal.SIGTERM)
        time.sleep(0.3)
        refused = client.request("GET", "/_outcrop/health")
        status, _, body = client.response(sid, deadline=20)
        assert status == 200
        frames = EventStreamBuffer()
        frames.add_data(body)
        assert [f.headers[":event-type"] for f in frames][-1] == "metadata"  # the whole stream
        assert client.resets[refused] == h2.errors.ErrorCodes.REFUSED_STREAM
        server.proc.wait(15)
    finally:
        client.close()


def test_h2c_stream_reset_by_the_client_mid_answer_leaves_the_server_serving(srv):
    client = H2Client(srv.port, window=16, auto_ack=False)  # the answer stalls on the window
    try:
        sid = client.request("POST", f"/model/{HAIKU}/converse-stream", CONVERSE,
                             [("content-type", "application/json")])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(isinstance(e, h2.events.DataReceived) for e in client.pump()):
                break
        client.conn.reset_stream(sid)
        client.flush()
        sid2 = client.request("GET", "/_outcrop/health")  # the connection itself goes on
        client.auto_ack = True
        client.conn.increment_flow_control_window(1 << 20)
        client.flush()
        status, _, body = client.response(sid2)
    finally:
        client.close()
    assert (status, json.loads(body)) == (200, {"status": "ok"})


def test_h2c_headers_over_max_header_bytes_are_refused_and_the_server_stays_up(srv):
    client = H2Client(srv.port)
    try:
        client.request("GET", "/_outcrop/health", headers=[("x-big", "a" * 20_000)])
        refused = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not refused:
            try:
                events = client.pump()
            except (ConnectionError, OSError):
                refused = True
                break
            refused = any(isinstance(e, h2.events.ConnectionTerminated | h2.events.StreamReset) for e in events)
            assert not any(isinstance(e, h2.events.ResponseReceived) and dict(e.headers)[b":status"] == b"200"
                           for e in events)
        assert refused
    finally:
        client.close()
    assert httpx.get(srv.url + "/_outcrop/health", timeout=5).status_code == 200


def test_h2c_hostile_bytes_after_the_preface_leave_the_server_serving(srv):
    """300 connections: the preface, then random bytes, or a real request's frames with bytes flipped or
    cut. Whatever the server makes of them (GOAWAY, reset, close), it keeps serving everyone else."""
    import random

    rng = random.Random(20261128)
    for i in range(300):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            if i % 2 == 0:
                payload = PREFACE + bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 600)))
            else:
                conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
                conn.initiate_connection()
                sid = conn.get_next_available_stream_id()
                conn.send_headers(sid, [(":method", "POST"), (":path", f"/model/{HAIKU}/converse"),
                                        (":scheme", "http"), (":authority", "x"),
                                        ("content-length", str(len(CONVERSE)))])
                conn.send_data(sid, CONVERSE, end_stream=True)
                frames = bytearray(conn.data_to_send())
                for _ in range(rng.randint(1, 8)):
                    at = rng.randrange(len(PREFACE), len(frames))
                    frames[at] = rng.getrandbits(8)
                payload = bytes(frames[: rng.randint(len(PREFACE), len(frames))])
            s.sendall(payload)
            s.settimeout(0.5)
            with contextlib.suppress(OSError):
                s.recv(65536)
        if i % 50 == 0:
            assert httpx.get(srv.url + "/_outcrop/health", timeout=5).status_code == 200
    status, _, _ = h2_exchange(srv.port, "GET", "/_outcrop/health")
    assert status == 200
    assert "Traceback" not in srv.log_text()


def test_h2c_preface_split_across_packets_is_still_h2c(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(PREFACE[:5])
        time.sleep(0.2)
        s.sendall(PREFACE[5:])
        s.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # an empty SETTINGS frame
        first = s.recv(9)
    assert first[3] == 0x04  # the server's first frame is its SETTINGS: it speaks HTTP/2


def test_http1_header_read_timeout_is_an_aws_shaped_408(srv):
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /_outcrop/health HTTP/1.1\r\nHost: x\r\n")  # and the head never ends
        reply = s.recv(65536)
    assert time.monotonic() - start < 2 + 3
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert b"x-amzn-errortype: RequestTimeoutException" in head
    assert "2 seconds" in json.loads(body)["message"]


def test_http1_oversized_head_is_an_aws_shaped_431(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /_outcrop/health HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 3000 + b"\r\n")
        reply = s.recv(65536)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431"), head
    assert "16384 bytes" in json.loads(body)["message"]


def test_http1_one_endless_header_is_cut_off_at_the_limit(srv):
    """Bytes of a head that never ends are counted as they come, not only when a header is complete."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /_outcrop/health HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        reply = b""
        try:
            for _ in range(40):
                s.sendall(b"a" * 1024)
        except (BrokenPipeError, ConnectionResetError):
            pass
        with contextlib.suppress(ConnectionResetError):
            reply = s.recv(65536)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 431"), reply[:200]


def test_http1_an_answer_given_before_the_body_arrived_is_not_lost_to_a_reset(srv):
    """A 404 needs none of the body: the server answers at once, then reads and drops the rest before it
    closes, so that the client, still sending, reads the answer rather than a reset."""
    body = b"x" * (4 * 1024 * 1024)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"POST /no-such-operation HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        time.sleep(0.3)  # the answer is written while the body is still to come
        s.sendall(body)  # no reset: the server is reading (and dropping) it
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404"), head
    assert b"x-amzn-errortype: unknownoperationexception" in head.lower()
    assert "No Bedrock operation" in json.loads(payload)["message"]


def test_http1_expect_100_continue_is_answered_before_the_body_is_sent(srv):
    """The interim answer is sent at once (the head of the final answer may wait for its body; it may not)."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"POST /model/%s/converse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % (HAIKU.encode(), len(CONVERSE)))
        interim = s.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        s.sendall(CONVERSE)
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]


def test_http1_head_answers_and_the_connection_goes_on(srv):
    """An answer with no body (HEAD) still goes out, and the kept-alive connection serves the next one."""
    with httpx.Client(timeout=5) as client:
        first = client.head(srv.url + "/_outcrop/health")
        second = client.get(srv.url + "/_outcrop/health")
    assert first.status_code in (200, 404) and first.content == b""
    assert second.json() == {"status": "ok"}


@pytest.mark.parametrize("split", [False, True])
def test_http1_upgrade_h2c_with_a_body_is_answered_over_http1_with_its_body(srv, split):
    """``curl --http2`` against http:// sends ``Upgrade: h2c`` with its POST. The upgrade is not taken;
    the request is answered as HTTP/1.1, body and all, and the connection goes on."""
    head = (b"POST /model/%s/converse HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (HAIKU.encode(), len(CONVERSE)))
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        if split:
            s.sendall(head + CONVERSE[:10])
            time.sleep(0.2)
            s.sendall(CONVERSE[10:])
        else:
            s.sendall(head + CONVERSE + b"GET /_outcrop/health HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        deadline = time.monotonic() + 10
        while reply.count(b"HTTP/1.1 ") < (1 if split else 2) and time.monotonic() < deadline:
            reply += s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
    assert b'"stopReason"' in reply
    if not split:
        assert b'{"status":"ok"}' in reply  # the request after it, in the same packet


def test_logs_are_json_lines_when_log_format_is_json(srv):
    lines = [line for line in srv.log_text().splitlines() if line.startswith("{")]
    assert lines, srv.log_text()[-2000:]
    entries = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    assert any(e["logger"].startswith("uvicorn") for e in entries)  # the server's own lines too
    assert any(e["message"].startswith("outcrop serving on http://") for e in entries)  # the banner too
    assert not [line for line in srv.log_text().splitlines() if line.startswith("outcrop serving")]
    assert not [e for e in entries if "setup plugin" in e["message"]]  # alembic's start-up noise


def test_a_database_that_cannot_be_used_is_named_when_it_comes_from_the_configuration(tmp_path):
    config = tmp_path / "outcrop.toml"
    config.write_text('database_url = "postgresql://u:secret@127.0.0.1:1/x"\n')
    cli = subprocess.run([sys.executable, "-m", "outcrop", "costs", "--config", str(config)],
                         capture_output=True, text=True)
    assert cli.returncode == 2, cli.stderr
    assert "the database postgresql://***@127.0.0.1:1/x cannot be used" in cli.stderr, cli.stderr


def test_sigterm_with_idle_keep_alive_connections_stops_promptly(server_factory):
    server = server_factory()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
    h2 = H2Client(server.port)
    try:
        assert httpx.get(server.url + "/_outcrop/health", timeout=5).status_code == 200
        start = time.monotonic()
        assert server.proc is not None
        os.killpg(server.proc.pid, signal.SIGTERM)
        server.proc.wait(10)
        assert time.monotonic() - start < 5
        # Stopped gracefully (the app's shutdown ran: metering closed), then exits by the signal it got.
        assert server.proc.returncode in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.log_text()
    finally:
        for s in idle:
            s.close()
        h2.close()


@pytest.mark.parametrize("setting", ["workers = -1", "workers = 65", 'log_level = "loud"'])
def test_server_settings_out_of_range_are_config_errors(tmp_path, setting):
    path = tmp_path / "bad.toml"
    path.write_text(setting + "\n")
    with pytest.raises(ConfigError):
        load_config(path)


def _read_answers(s: socket.socket, count: int, timeout: float = 10) -> list[tuple[bytes, bytes]]:
    """``count`` whole HTTP/1.1 answers (each framed by its Content-Length) read off ``s``, in order."""
    buffer, answers = b"", []
    deadline = time.monotonic() + timeout
    while len(answers) < count and time.monotonic() < deadline:
        head, sep, rest = buffer.partition(b"\r\n\r\n")
        if sep:
            fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
            length = int(fields.get(b"content-length", b"0"))
            if len(rest) >= length:
                answers.append((head, rest[:length]))
                buffer = rest[length:]
                continue
        chunk = s.recv(65536)
        if not chunk:
            break
        buffer += chunk
    return answers


def _converse_request(connection: bytes = b"") -> bytes:
    return (b"POST /model/%s/converse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s"
            b"Content-Length: %d\r\n\r\n" % (HAIKU.encode(), connection, len(CONVERSE))) + CONVERSE


def test_http1_pipelined_requests_are_answered_in_order(srv):
    """Several requests in one packet: each is answered, in the order sent, on the same connection."""
    health = b"GET /_outcrop/health HTTP/1.1\r\nHost: x\r\n\r\n"
    missing = b"GET /no-such-thing HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(_converse_request() + health + missing + _converse_request())
        answers = _read_answers(s, 4)
    assert [head.split(b" ", 2)[1] for head, _ in answers] == [b"200", b"200", b"404", b"200"]
    assert b'"stopReason"' in answers[0][1] and b'"stopReason"' in answers[3][1]
    assert json.loads(answers[1][1]) == {"status": "ok"}
    ids = [dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])[b"x-amzn-requestid"]
           for head, _ in answers]
    assert len(set(ids)) == 4


def test_http1_0_request_is_answered_then_the_connection_closes(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /_outcrop/health HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := s.recv(65536):  # ends: the server closes an HTTP/1.0 connection after its answer
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"connection: close" in head.lower()
    assert json.loads(body) == {"status": "ok"}


def test_http1_connection_close_from_the_client_is_honoured(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(_converse_request(b"Connection: close\r\n"))
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200") and b'"stopReason"' in reply


def test_http1_chunked_request_body_in_pieces_is_read_whole(srv):
    """A body sent chunked, in pieces with pauses between them (no Content-Length)."""
    pieces = [CONVERSE[:7], CONVERSE[7:30], CONVERSE[30:]]
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"POST /model/%s/converse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n" % HAIKU.encode())
        for piece in pieces:
            time.sleep(0.05)
            s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        s.sendall(b"0\r\n\r\n")
        answers = _read_answers(s, 1)
    assert answers and answers[0][0].startswith(b"HTTP/1.1 200"), answers
    assert b'"stopReason"' in answers[0][1]


def test_http1_large_body_arriving_slowly_is_read_whole(srv):
    """A body larger than what the server holds unread (its read pauses and resumes as the app reads)."""
    text = "word " * 60_000  # ~300 KB
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": text}]}]}).encode()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"POST /model/%s/converse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % (HAIKU.encode(), len(body)))
        for start in range(0, len(body), 50_000):
            s.sendall(body[start:start + 50_000])
            time.sleep(0.02)
        answers = _read_answers(s, 1)
    assert answers and answers[0][0].startswith(b"HTTP/1.1 200"), answers
    usage = json.loads(answers[0][1])["usage"]
    assert usage["inputTokens"] > 50_000


@pytest.mark.parametrize("garbage", [b"NOT HTTP AT ALL\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"])
def test_http1_malformed_request_is_an_aws_shaped_400_and_the_server_stays_up(srv, garbage):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(garbage)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), reply[:200]
    assert b"x-amzn-errortype: BadRequestException" in head
    assert "Invalid HTTP request" in json.loads(body)["message"]
    assert httpx.get(srv.url + "/_outcrop/health", timeout=5).status_code == 200


def test_http1_client_leaving_mid_stream_leaves_the_connection_set_clean(srv):
    """A ConverseStream whose client hangs up after the first bytes: the server notices, and serves on."""
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "Tell me a long story " * 50}]}],
                       "inferenceConfig": {"maxTokens": 2000}}).encode()
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"POST /model/%s/converse-stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % (HAIKU.encode(), len(body)) + body)
            first = s.recv(4096)
            assert first.startswith(b"HTTP/1.1 200"), first[:200]
            assert b"transfer-encoding: chunked" in first.lower()
    answers = [httpx.post(srv.url + f"/model/{HAIKU}/converse", content=CONVERSE, timeout=10,
                          headers={"content-type": "application/json"}) for _ in range(3)]
    assert all(a.status_code == 200 for a in answers)


def test_http1_a_client_shutting_its_side_after_its_request_still_gets_the_answer(srv):
    """``shutdown(SHUT_WR)`` after the request (as ``nc -N`` does): the answer still comes, then the close."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(_converse_request())
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert b'"stopReason"' in reply
