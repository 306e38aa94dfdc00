"""Fuzzing generated from the service models: thousands of malformed and hostile requests, no 5xx.

Valid requests for every operation outcrop serves are serialized by botocore's own rest-json serializer
from a seed input each; each is then mutated along its input shape (every label, query, header and body
member: wrong types, SQL metacharacters, path tricks, unicode, NUL bytes, huge and deep values, enormous
numbers, missing and extra members), and at the wire (invalid UTF-8, duplicate keys, truncated bodies,
wrong content types, wrong methods, unknown paths). They are sent over raw sockets, a bounded number at
a time, while a side task polls ``/_outcrop/health``.

Passing means: no 5xx, every answer AWS-shaped (``x-amzn-ErrorType`` and a JSON ``message``, or a
success), health answered 200 throughout, the server alive at the end, and profiles made before the
fuzz (in another account, which the fuzz also aims at by ARN) reading back byte for byte unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import botocore.session
import httpx
import orjson
import pytest
from botocore.model import OperationModel, Shape
from botocore.serialize import create_serializer
from support.model_bodies import BODY_SEEDS, mutated_body

from tests.conftest import ServerProcess

pytestmark = pytest.mark.slow

REQUESTS = 10_500
CONCURRENCY = 12
SEED = 20260601
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
HAIKU_FM = f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}"
KEEPER_ACCOUNT = "444455556666"  # owns the profiles that must survive; the fuzz acts in the default account
KEEPER_KEY = "AKIAKEEPER0000000001"
HELLO = [{"role": "user", "content": [{"text": "hello"}]}]
CLAUDE_BODY = orjson.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": [
    {"role": "user", "content": "hi"}]})

# One valid input per operation outcrop serves; ``{arn}`` is replaced by a pre-existing profile's ARN
# (of another account: the fuzz must not see it) or by a fuzz-made one.
SEEDS: dict[tuple[str, str], dict[str, Any]] = {
    ("bedrock", "CreateInferenceProfile"): {
        "inferenceProfileName": "fuzz", "description": "d", "modelSource": {"copyFrom": HAIKU_FM},
        "tags": [{"key": "k", "value": "v"}], "clientRequestToken": "tok-0001"},
    ("bedrock", "GetInferenceProfile"): {"inferenceProfileIdentifier": "{arn}"},
    ("bedrock", "ListInferenceProfiles"): {"maxResults": 10, "typeEquals": "APPLICATION"},
    ("bedrock", "DeleteInferenceProfile"): {"inferenceProfileIdentifier": "{arn}"},
    ("bedrock", "TagResource"): {"resourceARN": "{arn}", "tags": [{"key": "k2", "value": "v2"}]},
    ("bedrock", "UntagResource"): {"resourceARN": "{arn}", "tagKeys": ["team"]},
    ("bedrock", "ListTagsForResource"): {"resourceARN": "{arn}"},
    ("bedrock", "ListFoundationModels"): {"byProvider": "Anthropic", "byOutputModality": "TEXT"},
    ("bedrock", "GetFoundationModel"): {"modelIdentifier": HAIKU},
    ("bedrock-runtime", "Converse"): {
        "modelId": f"us.{HAIKU}", "messages": HELLO, "inferenceConfig": {"maxTokens": 5, "temperature": 0.5},
        "system": [{"text": "be brief"}], "additionalModelRequestFields": {"top_k": 5},
        "toolConfig": {"tools": [{"toolSpec": {"name": "t", "inputSchema": {"json": {"type": "object"}}}}]}},
    ("bedrock-runtime", "ConverseStream"): {"modelId": f"us.{HAIKU}", "messages": HELLO},
    ("bedrock-runtime", "InvokeModel"): {
        "modelId": HAIKU, "body": CLAUDE_BODY, "contentType": "application/json", "accept": "application/json"},
    ("bedrock-runtime", "InvokeModelWithResponseStream"): {
        "modelId": f"us.{HAIKU}", "body": CLAUDE_BODY, "contentType": "application/json"},
    ("bedrock-runtime", "CountTokens"): {"modelId": HAIKU, "input": {"converse": {"messages": HELLO}}},
}

HOSTILE_STRINGS = [
    "'; DROP TABLE inference_profiles; --", '" OR 1=1 --', "' OR '1'='1", "%' OR 1=1 --", "\\'; --",
    "1; DELETE FROM access_keys", "Robert'); DROP TABLE tags;--", "../../../../etc/passwd", "..\\..\\boot.ini",
    "a\x00b", "\x00", "名前テスト", "🦜" * 50, "\u202e\u0635\ufeff", "\ud7ff\ue000", "x" * 20_000, "",
    " ", "\r\n\r\nHTTP/1.1 200 OK", "${jndi:ldap://x}", "{{7*7}}", "<script>alert(1)</script>", "%s%n%x",
    "arn:aws:bedrock:us-east-1:444455556666:application-inference-profile/aaaaaaaaaaaa", "*", "?", "[]",
]
WRONG_TYPES: list[Any] = [
    None, True, 0, -1, 2**63, -(2**63) - 1, 1.5, "7", [], {}, [None], {"": None}, [[[]]], "true",
]
# Raw JSON number texts orjson or the model may choke on (spliced in as text).
HUGE_NUMBERS = [b"1e999999", b"-1e400", b"9" * 5000, b"1" + b"0" * 400, b"-0", b"1E+2147483648",
                b"0.0000000000000000000000000000001", b"NaN", b"Infinity", b"0x10", b"01"]
PATH_TRICKS = [
    "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "%2e%2e%2f%2e%2e", "..", ".", "a%00b", "%00", "%C0%AF", "%C0%AE%C0%AE",
    "%E0%80%AF", "%FF", "%", "%zz", "%2F", "a%2Fb%2Fc", "%252F", "%u002F", "a" * 5000, "%3B%20DROP%20TABLE",
    quote("'; DROP TABLE inference_profiles; --", safe=""), quote('" OR 1=1 --', safe=""), quote("名前", safe=""),
    "arn%3Aaws%3Abedrock%3Aus-east-1%3A444455556666%3Aapplication-inference-profile%2Faaaaaaaaaaaa",
    "arn:aws:bedrock:us-east-1:444455556666:application-inference-profile/../../x", "%0d%0aX-Injected:%201",
    "~", "%7E", "a;b", "a,b", "a=b", "a%20b", "+",
]
CONTENT_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                 "application/json; charset=latin-1", "", "application/xml", "\x7f", "application/json" * 500]


@dataclass
class Request:
    """One HTTP/1.1 request as bytes on the wire (everything but Host, Connection and Content-Length)."""

    op: str
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_length: int | None = None  # None: len(body); else a lie (a truncated body)
    raw_path: bytes | None = None  # sent as is (non-ASCII bytes)

    def wire(self, port: int) -> bytes:
        path = self.raw_path if self.raw_path is not None else self.path.encode("latin-1", "replace")
        lines = [b"%s %s HTTP/1.1" % (self.method.encode(), path), b"Host: 127.0.0.1:%d" % port,
                 b"Connection: close"]
        for k, v in self.headers.items():
            lines.append(k.encode("latin-1", "replace") + b": " + v.encode("utf-8", "replace"))
        length = len(self.body) if self.content_length is None else self.content_length
        if self.body or self.method in ("POST", "PUT", "PATCH") or self.content_length is not None:
            lines.append(b"Content-Length: %d" % length)
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body


# ------------------------------------------------------------------------------------ generation
def _models() -> dict[tuple[str, str], OperationModel]:
    session = botocore.session.get_session()
    ops = {}
    for service in ("bedrock", "bedrock-runtime"):
        model = session.get_service_model(service)
        for name in model.operation_names:
            ops[(service, name)] = model.operation_model(name)
    return ops


_SERIALIZER = create_serializer("rest-json", include_validation=False)


def _serialize(om: OperationModel, params: dict[str, Any]) -> Request:
    """botocore's own rest-json serialization of ``params`` (no validation), as a raw request."""
    wire = _SERIALIZER.serialize_to_request(params, om)
    path = wire["url_path"]
    if wire["query_string"]:
        path += "?" + urlencode(wire["query_string"], doseq=True)
    headers = {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in wire["headers"].items()}
    body = wire["body"] if isinstance(wire["body"], bytes) else str(wire["body"]).encode()
    return Request(om.name, wire["method"], path, headers, body)


def _locations(om: OperationModel) -> dict[str, str]:
    shape = om.input_shape
    if shape is None:
        return {}
    return {name: m.serialization.get("location", "body") for name, m in shape.members.items()}


def _bad_value(rng: random.Random, shape: Shape | None) -> Any:
    """A value of the wrong type, or a hostile one of the right type, for a member of ``shape``."""
    pick = rng.random()
    if pick < 0.35:
        return rng.choice(HOSTILE_STRINGS)
    if pick < 0.7:
        return rng.choice(WRONG_TYPES)
    if pick < 0.8:
        depth = rng.choice([10, 100, 500])
        value: Any = "x"
        for _ in range(depth):
            value = [value] if rng.random() < 0.5 else {"a": value}
        return value
    if pick < 0.9:
        value = rng.choice(HOSTILE_STRINGS[:10])
        return {f"k{i}": value for i in range(rng.choice([1, 50, 2000]))}
    return [rng.choice(WRONG_TYPES)] * rng.choice([1, 100, 5000])


def _shape_mutation(rng: random.Random, om: OperationModel, params: dict[str, Any]) -> Request:
    """A request with one to three input members made wrong along the operation's input shape.

    Members bound to the path, query or headers get hostile text (botocore serializes it, encoding it as a
    client would); members of the JSON body get any value at all, spliced into botocore's serialized body.
    """
    shape = om.input_shape
    members = dict(shape.members) if shape is not None else {}
    locations = _locations(om)
    text_params = dict(params)
    body_edits: list[tuple[str, Any]] = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        action = rng.random()
        if action < 0.15:
            body_edits.append((rng.choice([*members, "x"]), _MISSING))
        elif action < 0.25:
            body_edits.append((rng.choice(["extra", "__proto__", "inferenceProfileArn", "modelId ", "\u0000"]), "x"))
        elif members:
            name = rng.choice(list(members))
            member = members[name]
            if locations[name] != "body":
                value = rng.choice([*HOSTILE_STRINGS, *map(str, WRONG_TYPES)])
                if locations[name] == "header":
                    value = "".join(c for c in value if c not in "\r\n\x00")[:4000]
                text_params[name] = value
            elif member.type_name == "structure" and rng.random() < 0.5:
                inner = rng.choice([*member.members, "bogus"])
                body_edits.append((name, {inner: _bad_value(rng, None)}))
            elif member.type_name == "list" and rng.random() < 0.5:
                body_edits.append((name, [_bad_value(rng, None) for _ in range(rng.choice([1, 3, 60]))]))
            else:
                body_edits.append((name, _bad_value(rng, member)))
    req = _serialize(om, text_params)
    if body_edits and req.body[:1] == b"{":
        document = orjson.loads(req.body)
        for name, value in body_edits:
            if value is _MISSING:
                document.pop(name, None)
            elif isinstance(value, dict) and isinstance(document.get(name), dict) and len(value) == 1:
                document[name] = {**document[name], **value}
            else:
                document[name] = value
        req.body = json.dumps(document).encode()  # ASCII, lone surrogates as \\ud800 escapes
    return req


_MISSING = object()


def _wire_mutation(rng: random.Random, req: Request, om: OperationModel) -> Request:
    """Mutations a serializer would never produce: in the path, query, headers and raw body bytes."""
    kind = rng.randrange(12)
    body = req.body
    if kind == 0 and om.input_shape is not None:  # a label replaced by a path trick
        trick = rng.choice(PATH_TRICKS)
        segments = req.path.split("?", 1)[0].split("/")
        label_at = [i for i, s in enumerate(segments) if s and i > 1] or [len(segments) - 1]
        segments[rng.choice(label_at)] = trick
        return Request(req.op, req.method, "/".join(segments), req.headers, body)
    if kind == 1:  # query: wrong types, unknown and repeated parameters, encoded NUL
        q = rng.choice(["maxResults=abc", "maxResults=-1", "maxResults=" + "9" * 40, "maxResults=1&maxResults=2",
                        "nextToken=%00%FF", "nextToken=" + "A" * 10_000, "type=%27%20OR%201%3D1", "a=%zz",
                        "byProvider=" + quote("'; DROP TABLE x; --"), "&&&==", "typeEquals=SYSTEM_DEFINED%00"])
        sep = "&" if "?" in req.path else "?"
        return Request(req.op, req.method, req.path + sep + q, req.headers, body)
    if kind == 2:  # invalid UTF-8 and NUL bytes inside the JSON
        if body:
            at = rng.randrange(len(body))
            body = body[:at] + rng.choice([b"\xff\xfe", b"\xc0\xaf", b"\x00", b"\xed\xa0\x80", b"\x80"]) + body[at:]
        else:
            body = b'{"\xff": "\x00\xc3"}'
        return Request(req.op, req.method, req.path, req.headers, body)
    if kind == 3 and body:  # a truncated body, honestly sized
        return Request(req.op, req.method, req.path, req.headers, body[: rng.randrange(len(body))])
    if kind == 4:  # deep JSON
        depth = rng.choice([1000, 1024, 1025, 5000, 100_000])
        opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
        return Request(req.op, req.method, req.path, req.headers, opener * depth + b"1" + closer * depth)
    if kind == 5:  # duplicate keys
        body = body[:-1] + b"," + body[1:] if body.startswith(b"{") and len(body) > 2 else b'{"a": 1, "a": 2}'
        return Request(req.op, req.method, req.path, req.headers, body)
    if kind == 6:  # enormous or non-JSON numbers spliced into the body
        number = rng.choice(HUGE_NUMBERS)
        target = rng.choice([b'{"maxResults": %s}', b'{"inferenceConfig": {"maxTokens": %s}}',
                             b'{"messages": %s}', b"%s", b'{"tags": [{"key": %s, "value": "v"}]}'])
        return Request(req.op, req.method, req.path, req.headers, target % number)
    if kind == 7:  # wrong content type (and header garbage)
        headers = {**req.headers, "Content-Type": rng.choice(CONTENT_TYPES)}
        if rng.random() < 0.5:
            headers[rng.choice(["X-Amzn-Bedrock-Trace", "Accept", "X-Amzn-Bedrock-GuardrailIdentifier",
                                "X-Amzn-Bedrock-PerformanceConfig-Latency", "X-Amz-Date", "Authorization"])] = (
                rng.choice(HOSTILE_STRINGS[:20]).replace("\r", "").replace("\n", "").replace("\x00", ""))
        return Request(req.op, req.method, req.path, headers, body)
    if kind == 8:  # not a JSON object at all
        body = rng.choice([b"[]", b'"s"', b"null", b"true", b"1", b"{", b"}", b"{{}}", b"\x00" * 100, b"\xef\xbb\xbf{}",
                           b"{'a': 1}", b'{"a":1}{"b":2}', b" " * 10_000, b"\n"])
        return Request(req.op, req.method, req.path, req.headers, body)
    if kind == 9:  # the wrong method, or a path no operation serves
        if rng.random() < 0.5:
            method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
            return Request(req.op, method, req.path, req.headers, body)
        path = rng.choice(["/", "/model", "/model/", "/inference-profiles/", "//inference-profiles",
                           "/inference-profiles/a/b/c", "/tags", "/tags/", "/model/x/y/z/converse2",
                           "/custom-models", "/_outcrop/", "/_outcrop/../inference-profiles", "/no/such/operation",
                           "/%2e%2e/inference-profiles", "/model/%00/converse", "/listTagsForResource?x=1"])
        return Request(req.op, rng.choice(["GET", "POST", "DELETE"]), path, req.headers, body)
    if kind == 10:  # non-ASCII bytes straight in the request target
        raw = req.path.encode() + rng.choice([b"\xff", b"\xc3\xa9", b"\xe5\x90\x8d"])
        return Request(req.op, req.method, req.path, req.headers, body, raw_path=raw)
    # a huge string in one place of an otherwise valid body
    if body.startswith(b"{") and len(body) > 2:
        body = b'{"pad": "' + b"x" * (1_000_000 if rng.random() < 0.05 else 50_000) + b'",' + body[1:]
    return Request(req.op, req.method, req.path, req.headers, body)


def generate(n: int, arns: list[str], seed: int = SEED) -> Iterator[Request]:
    """``n`` hostile requests over every served operation: half mutated along the input shape, three
    quarters at the wire (many both)."""
    rng = random.Random(seed)
    models = _models()
    served = [(models[key], params) for key, params in SEEDS.items()]
    for i in range(n):
        om, seed_params = served[i % len(served)]
        params = {k: rng.choice(arns) if v == "{arn}" else v for k, v in seed_params.items()}
        req = _shape_mutation(rng, om, params) if rng.random() < 0.5 else _serialize(om, params)
        if rng.random() < 0.75 or not req.body:
            req = _wire_mutation(rng, req, om)
        yield req


# ------------------------------------------------------------------------------------------- sending
@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def send_raw(port: int, data: bytes, timeout: float = 30.0) -> Answer | None:
    """Send one request and read the whole answer (the server closes after it: ``Connection: close``).

    None when the server closed the connection without an answer (it may, for broken HTTP framing).
    """
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(data)
        with contextlib.suppress(ConnectionError):  # refused mid-body: the answer may still be there
            await asyncio.wait_for(writer.drain(), timeout)
        raw = await asyncio.wait_for(_read_all(reader), timeout)
    finally:
        writer.close()
    if not raw:
        return None
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return Answer(status, headers, body)


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    try:
        while chunk := await reader.read(65536):
            chunks.append(chunk)
    except ConnectionError:
        pass
    return b"".join(chunks)


def _dechunk(body: bytes) -> bytes:
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2:]
    return b"".join(out)


def problem_with(req: Request, answer: Answer | None) -> str | None:
    """What is wrong with the answer to one fuzz request, or None."""
    if answer is None:
        return None if req.raw_path is not None else "no answer"
    if answer.status >= 500:
        return f"{answer.status} {answer.headers.get('x-amzn-errortype')} {answer.body[:300]!r}"
    if answer.status >= 400:
        if "x-amzn-requestid" not in answer.headers:
            # Refused by the HTTP server itself (broken framing, a bad request target): no AWS shape to give.
            return None if req.raw_path is not None or answer.status in (400, 413, 414, 431) else "not from outcrop"
        if "x-amzn-errortype" not in answer.headers:
            return f"{answer.status} without x-amzn-ErrorType"
        if req.method == "HEAD":
            return None  # an answer to HEAD has no body
        try:
            document = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            return f"{answer.status} with a non-JSON error body {answer.body[:200]!r}"
        if not isinstance(document.get("message"), str):
            return f"{answer.status} without a message: {answer.body[:200]!r}"
        return None
    if answer.headers.get("content-type", "").startswith("application/json") and answer.status != 204:
        try:
            orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            return f"{answer.status} success with broken JSON {answer.body[:200]!r}"
    return None


async def fuzz(port: int, requests: list[Request]) -> tuple[Counter[int], list[str], list[str]]:
    """Send every request (``CONCURRENCY`` at a time) while polling health; (statuses, problems, health failures)."""
    statuses: Counter[int] = Counter()
    problems: list[str] = []
    health_failures: list[str] = []
    done = asyncio.Event()

    async def poll_health() -> None:
        async with httpx.AsyncClient(timeout=5.0) as client:
            while not done.is_set():
                try:
                    r = await client.get(f"http://127.0.0.1:{port}/_outcrop/health")
                    if r.status_code != 200:
                        health_failures.append(f"health {r.status_code}")
                except httpx.HTTPError as e:
                    health_failures.append(f"health {type(e).__name__}: {e}")
                await asyncio.sleep(0.1)

    queue = iter(requests)

    async def worker() -> None:
        for req in queue:
            try:
                answer = await send_raw(port, req.wire(port))
            except (TimeoutError, OSError) as e:
                problems.append(f"{req.op} {req.method} {req.path[:120]}: {type(e).__name__} {e}")
                continue
            if answer is not None:
                statuses[answer.status] += 1
            problem = problem_with(req, answer)
            if problem is not None:
                problems.append(f"{req.op} {req.method} {req.path[:120]} body={req.body[:120]!r}: {problem}")

    health = asyncio.create_task(poll_health())
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    done.set()
    await health
    return statuses, problems, health_failures


# ------------------------------------------------------------------------- model bodies, at every depth
# InvokeModel's body is a blob to botocore, so the shape-driven fuzz above cannot reach inside it: each
# family's rich body (tests/support/model_bodies.py) is mutated along its own JSON structure instead.
def model_body_requests(n: int, seed: int = SEED) -> Iterator[Request]:
    rng = random.Random(seed)
    headers = {"Content-Type": "application/json", "Authorization": _open_mode_auth("AKIAIOSFODNN7EXAMPLE")}
    for _ in range(n):
        model = rng.choice(sorted(BODY_SEEDS))
        body = mutated_body(rng, BODY_SEEDS[model], rng.choice([1, 1, 2, 3]))
        raw = json.dumps(body).encode()  # orjson refuses integers beyond 64 bits, which the fuzz sends
        op = rng.choice(["invoke", "invoke", "invoke-with-response-stream", "count-tokens"])
        if op == "count-tokens":
            raw = json.dumps({"input": {"invokeModel": {"body": raw.decode()}}}).encode()
        yield Request(f"InvokeModel body ({op})", "POST", f"/model/{quote(model, safe='')}/{op}", headers, raw)


# --------------------------------------------------------------------------------------------- tests
def keeper_profiles(srv: ServerProcess) -> list[str]:
    bedrock = srv.client("bedrock", access_key=KEEPER_KEY)
    arns = []
    for i in range(3):
        arns.append(bedrock.create_inference_profile(
            inferenceProfileName=f"keeper-{i}", description=f"must survive {i}", modelSource={"copyFrom": HAIKU_FM},
            tags=[{"key": "team", "value": f"t{i}"}, {"key": "cost:centre", "value": "a/b=c+d@e"}],
        )["inferenceProfileArn"])
    return arns


def snapshot(srv: ServerProcess, arns: list[str]) -> list[bytes]:
    """Get and ListTagsForResource of each profile, as the raw bytes the server sends."""
    out = []
    for arn in arns:
        for path in (f"/inference-profiles/{quote(arn, safe='')}", "/listTagsForResource"):
            request = Request("snapshot", "GET" if path.startswith("/inference") else "POST", path,
                              {"Authorization": _open_mode_auth(KEEPER_KEY), "Content-Type": "application/json"},
                              b"" if path.startswith("/inference") else orjson.dumps({"resourceARN": arn}))
            answer = asyncio.run(send_raw(srv.port, request.wire(srv.port)))
            assert answer is not None and answer.status == 200, answer
            out.append(answer.body)
    return out


def _open_mode_auth(key: str) -> str:
    """An Authorization header naming ``key`` (open mode reads the account from it and verifies nothing)."""
    return (f"AWS4-HMAC-SHA256 Credential={key}/20260101/us-east-1/bedrock/aws4_request, "
            f"SignedHeaders=host, Signature={'0' * 64}")


@pytest.fixture
def fuzz_server(server_factory: Callable[..., ServerProcess], database_url: str) -> ServerProcess:
    return server_factory(database_url, config=f'[accounts]\n{KEEPER_KEY} = "{KEEPER_ACCOUNT}"\n')


def test_ten_thousand_hostile_requests_get_no_5xx_and_change_nothing_they_should_not(fuzz_server):
    srv = fuzz_server
    keepers = keeper_profiles(srv)
    before = snapshot(srv, keepers)
    bedrock = srv.client("bedrock")  # the fuzz's own account: profiles it may tag, untag and delete
    own = [bedrock.create_inference_profile(inferenceProfileName=f"fuzz-own-{i}", modelSource={"copyFrom": HAIKU_FM})[
        "inferenceProfileArn"] for i in range(5)]
    targets = [*keepers, *own, keepers[0].rsplit("/", 1)[1], "us." + HAIKU, "aaaaaaaaaaaa",
               keepers[0].replace(KEEPER_ACCOUNT, "123456789012")]

    requests = list(generate(REQUESTS, targets))
    started = time.monotonic()
    statuses, problems, health_failures = asyncio.run(fuzz(srv.port, requests))
    elapsed = time.monotonic() - started
    print(f"\n{len(requests)} hostile requests in {elapsed:.1f}s: {dict(sorted(statuses.items()))}")

    assert problems == [], f"{len(problems)} problems, e.g.:\n" + "\n".join(problems[:40])
    assert health_failures == [], health_failures[:10]
    assert sum(statuses.values()) >= 10_000
    assert srv.proc is not None and srv.proc.poll() is None, "the server process died"
    assert snapshot(srv, keepers) == before
    assert "Traceback" not in srv.log_text(), srv.log_text()[-5000:]


def test_model_bodies_mutated_at_every_depth_are_refused_with_their_path_never_a_5xx(fuzz_server):
    """Every family's InvokeModel body (and its stream's, and CountTokens'), mutated deep inside: each answer a
    success or AWS's error shape, never a 5xx; a refused body is Bedrock's "Malformed input request" naming the
    value's path (or another ValidationException saying what to fix), and no body gets past a family's schema
    to trip its parser."""
    srv = fuzz_server
    requests = list(model_body_requests(3_000))
    statuses, problems, health_failures = asyncio.run(fuzz(srv.port, requests))
    print(f"\n{len(requests)} mutated model bodies: {dict(sorted(statuses.items()))}")
    assert problems == [], f"{len(problems)} problems, e.g.:\n" + "\n".join(problems[:40])
    assert health_failures == [], health_failures[:10]
    assert statuses[200] > 300 and statuses[400] > 1_000, statuses  # both sides of the line were exercised
    log = srv.log_text()
    assert "Traceback" not in log, log[-5000:]
    assert "but not its parser" not in log, [line for line in log.splitlines() if "but not its parser" in line][:10]
