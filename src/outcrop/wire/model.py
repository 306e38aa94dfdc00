"""botocore's service models, seen from the server side: routes, operations and their HTTP bindings.

Nothing here is hand-written per operation. Each operation's ``requestUri`` becomes a route matched
against the *raw* request path, so an ARN sent percent-encoded as one segment (``%3A``, ``%2F``) stays one
label; labels are percent-decoded only after matching. Where a model does not fit a server, it is patched
as JSON at load time (``MODEL_PATCHES``), never special-cased in code.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape

# Server-side patches of the service models, applied to the raw JSON before use.
#  * bedrock-runtime ``modelId`` labels are made greedy, so an ARN with a literal ``/`` (as some SDKs and
#    gateways send it) still routes: ``/model/arn:aws:...:application-inference-profile/abc/converse``.
MODEL_PATCHES: dict[str, list[tuple[str, str, str, str]]] = {
    "bedrock-runtime": [
        ("operation-uri", op, "{modelId}", "{modelId+}")
        for op in (
            "Converse",
            "ConverseStream",
            "InvokeModel",
            "InvokeModelWithResponseStream",
            "InvokeModelWithBidirectionalStream",
            "CountTokens",
        )
    ]
    # Response headers Bedrock sends on InvokeModel that the model does not declare.
    + [
        ("output-header", "InvokeModelResponse", member, header)
        for member, header in (
            ("invocationLatency", "X-Amzn-Bedrock-Invocation-Latency"),
            ("inputTokenCount", "X-Amzn-Bedrock-Input-Token-Count"),
            ("outputTokenCount", "X-Amzn-Bedrock-Output-Token-Count"),
        )
    ]
    # outcrop's own: the Region that served the invocation (the routed Region, which Bedrock only logs).
    + [
        ("output-header", response, "inferenceRegion", "x-outcrop-inference-region")
        for response in (
            "ConverseResponse",
            "ConverseStreamResponse",
            "InvokeModelResponse",
            "InvokeModelWithResponseStreamResponse",
        )
    ],
}

SERVICES = ("bedrock", "bedrock-runtime")


@dataclass(frozen=True)
class Binding:
    member: str
    wire_name: str
    shape: Shape


@dataclass
class Operation:
    """One operation of one service, with everything the wire layer needs precomputed."""

    service: str
    name: str
    model: OperationModel
    method: str
    status: int
    path_regex: re.Pattern[str]
    labels: list[Binding]
    query: dict[str, Binding]
    headers: list[Binding]
    payload: Binding | None
    body: dict[str, Binding]
    static_query: dict[str, str]
    errors: dict[str, int] = field(default_factory=dict)
    output_headers: list[Binding] = field(default_factory=list)
    output_payload: Binding | None = None
    output_body: dict[str, Binding] = field(default_factory=dict)
    output_status_member: str | None = None

    @property
    def input_shape(self) -> Shape | None:
        return self.model.input_shape

    @property
    def output_shape(self) -> Shape | None:
        return self.model.output_shape

    @property
    def has_event_stream_output(self) -> bool:
        return self.output_payload is not None and bool(
            self.output_payload.shape.serialization.get("eventstream")
            or self.output_payload.shape.metadata.get("eventstream")
        )


def _load_raw(service: str) -> dict[str, Any]:
    session = botocore.session.get_session()
    loader = session.get_component("data_loader")
    api_version = loader.determine_latest_version(service, "service-2")
    raw = copy.deepcopy(loader.load_service_model(service, "service-2", api_version))
    for kind, target, old, new in MODEL_PATCHES.get(service, []):
        if kind == "operation-uri":
            http = raw["operations"][target]["http"]
            http["requestUri"] = http["requestUri"].replace(old, new)
        elif kind == "output-header":
            raw["shapes"].setdefault("OutcropHeaderValue", {"type": "string"})
            raw["shapes"][target]["members"][old] = {
                "shape": "OutcropHeaderValue", "location": "header", "locationName": new,
            }
    return raw


def _route_regex(request_uri: str) -> tuple[re.Pattern[str], list[str], dict[str, str]]:
    path, _, static = request_uri.partition("?")
    static_query = dict(p.split("=", 1) if "=" in p else (p, "") for p in static.split("&") if p)
    labels: list[str] = []
    pattern = ["^"]
    for piece in re.split(r"(\{[^}]+\})", path):
        if piece.startswith("{"):
            name = piece[1:-1]
            greedy = name.endswith("+")
            labels.append(name.rstrip("+"))
            # An empty label still routes, so that validation names the member instead of a 404.
            pattern.append("(.+)" if greedy else "([^/]*)")
        else:
            pattern.append(re.escape(piece))
    pattern.append("$")
    return re.compile("".join(pattern)), labels, static_query


def _bindings(shape: Shape | None) -> tuple[list[Binding], dict[str, Binding], list[Binding], Binding | None, dict[str, Binding], str | None]:
    labels: list[Binding] = []
    query: dict[str, Binding] = {}
    headers: list[Binding] = []
    body: dict[str, Binding] = {}
    payload: Binding | None = None
    status_member: str | None = None
    if shape is None:
        return labels, query, headers, payload, body, status_member
    payload_name = shape.serialization.get("payload")
    for name, member in shape.members.items():
        loc = member.serialization.get("location")
        wire = member.serialization.get("name", name)
        binding = Binding(name, wire, member)
        if loc == "uri":
            labels.append(binding)
        elif loc == "querystring":
            query[wire] = binding
        elif loc == "header":
            headers.append(Binding(name, wire.lower(), member))
        elif loc == "statusCode":
            status_member = name
        elif name == payload_name:
            payload = binding
        elif loc is None:
            body[wire] = binding
    return labels, query, headers, payload, body, status_member


class ServiceCatalog:
    """The operations of every served service, and the route table that finds one from a request."""

    def __init__(self, services: Iterable[str] = SERVICES) -> None:
        self.models: dict[str, ServiceModel] = {}
        self.operations: dict[tuple[str, str], Operation] = {}
        self._routes: dict[tuple[str, str], list[Operation]] = {}
        self._matched: dict[tuple[str, str], tuple[Operation, tuple[str, ...]]] = {}
        for service in services:
            model = ServiceModel(_load_raw(service), service_name=service)
            self.models[service] = model
            for op_name in model.operation_names:
                self._add(service, model.operation_model(op_name))
        for ops in self._routes.values():
            # Most literal characters first, so a specific route wins over one with a broader label.
            ops.sort(key=lambda o: -len(re.sub(r"\{[^}]+\}", "", o.model.http["requestUri"])))
        self._check_collisions()

    def _add(self, service: str, om: OperationModel) -> None:
        http = om.http
        regex, label_names, static_query = _route_regex(http["requestUri"])
        labels, query, headers, payload, body, _ = _bindings(om.input_shape)
        by_label = {b.wire_name: b for b in labels}
        ordered_labels = [by_label[n] for n in label_names if n in by_label]
        _, _, out_headers, out_payload, out_body, status_member = _bindings(om.output_shape)
        errors = {}
        for err in om.error_shapes:
            code = err.metadata.get("error", {}).get("code", err.name)
            errors[code] = err.metadata.get("error", {}).get("httpStatusCode", 400)
        op = Operation(
            service=service,
            name=om.name,
            model=om,
            method=http["method"],
            status=http.get("responseCode", 200),
            path_regex=regex,
            labels=ordered_labels,
            query=query,
            headers=headers,
            payload=payload,
            body=body,
            static_query=static_query,
            errors=errors,
            output_headers=out_headers,
            output_payload=out_payload,
            output_body=out_body,
            output_status_member=status_member,
        )
        self.operations[(service, om.name)] = op
        self._routes.setdefault((op.method, _first_segment(http["requestUri"])), []).append(op)

    def _check_collisions(self) -> None:
        seen: dict[tuple[str, str], str] = {}
        for op in self.operations.values():
            key = (op.method, op.model.http["requestUri"].split("?")[0])
            if key in seen and seen[key] != op.service:
                raise RuntimeError(f"route {key} is claimed by both {seen[key]} and {op.service}")
            seen[key] = op.service

    def match(self, method: str, raw_path: str) -> tuple[Operation, list[str]] | None:
        """The operation a request names, with its still-encoded label values, or None."""
        key = (method, raw_path)
        found = self._matched.get(key)
        if found is not None:
            return found[0], list(found[1])
        for op in self._routes.get((method, _first_segment(raw_path)), ()):
            m = op.path_regex.match(raw_path)
            if m:
                groups = m.groups()
                # Runtime calls repeat the same few paths (a model or profile and an operation); trying each
                # candidate's expression over a long ARN was a few µs a request. Bounded: past the limit, forget.
                if len(raw_path) <= _REMEMBERED_PATH:
                    if len(self._matched) >= _REMEMBERED_PATHS:
                        self._matched.clear()
                    self._matched[key] = (op, groups)
                return op, list(groups)
        return None

    def path_exists(self, raw_path: str) -> list[str]:
        """The methods that some operation serves on this path (for a useful error on a wrong method)."""
        methods = []
        for (method, _), ops in self._routes.items():
            if any(op.path_regex.match(raw_path) for op in ops):
                methods.append(method)
        return sorted(set(methods))


T = TypeVar("T")


def once_per_shape(cache: dict[int, tuple[Shape, T]], shape: Shape, build: Callable[[Shape], T]) -> T:
    """``build(shape)``, made once per shape and kept in ``cache``. Keyed by the shape's model dict, which
    botocore shares between every reference to a shape without member traits; the shape is kept alive
    beside what was built, so that the key is never reused."""
    key = id(shape._shape_model)
    found = cache.get(key)
    if found is None:
        found = cache[key] = (shape, build(shape))
    return found[1]


_REMEMBERED_PATHS = 4096
_REMEMBERED_PATH = 400


def _first_segment(path: str) -> str:
    path = path.split("?", 1)[0]
    seg = path.lstrip("/").split("/", 1)[0]
    return "" if seg.startswith("{") else seg
