"""Prometheus series of the runtime, as CloudWatch's ``AWS/Bedrock`` namespace names them.

Labels: ``model_id`` (the ModelId dimension: a profile's ID as AWS uses it, or the model ID of a direct
call) and ``region`` (the source Region, where AWS emits metrics). Cardinality is bounded: at most
``MAX_MODEL_IDS`` distinct ModelId values and the catalogue's Regions; anything beyond is counted under
``other``, so no caller can grow the series without bound. The labelled children of each (ModelId,
Region) are looked up once and kept (``_Series``): an observation is then a few increments.

Observations are made off the request path: an invocation only queues its event (``observe_later``);
the event loop applies the queue every quarter second while events come (``Meter._tick``), and
``/metrics`` applies what is left before it renders. Applied one by one as requests come in, cold, they cost an invocation several times what they
cost applied together (bench/runtime).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Histogram

from outcrop.metering.events import UsageEvent
from outcrop.metering.prices import PICO_PER_USD

MAX_MODEL_IDS = 1000
OTHER = "other"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _Series(NamedTuple):
    """The children of one (ModelId, Region) label pair."""

    invocations: Any
    input_tokens: Any
    output_tokens: Any
    client_errors: Any
    server_errors: Any
    throttles: Any
    cost: Any
    latency: Any
    ttft: Any


class MeteringMetrics:
    def __init__(self, registry: CollectorRegistry, regions: Iterable[str]) -> None:
        labels = ("model_id", "region")
        self.regions = frozenset(regions)
        self._model_ids: set[str] = set()
        self._series: dict[tuple[str, str], _Series] = {}
        self._pending: collections.deque[UsageEvent] = collections.deque()
        self.invocations = Counter("outcrop_invocations", "Invocations (throttled ones excluded, as CloudWatch counts)", labels, registry=registry)
        self.input_tokens = Counter("outcrop_input_tokens", "Input tokens", labels, registry=registry)
        self.output_tokens = Counter("outcrop_output_tokens", "Output tokens", labels, registry=registry)
        self.client_errors = Counter("outcrop_invocation_client_errors", "Invocations that failed with a client error", labels, registry=registry)
        self.server_errors = Counter("outcrop_invocation_server_errors", "Invocations that failed with a server error", labels, registry=registry)
        self.throttles = Counter("outcrop_invocation_throttles", "Throttled invocations", labels, registry=registry)
        self.cost = Counter("outcrop_cost_usd", "On-demand cost in USD, at the source Region's price", labels, registry=registry)
        self.latency = Histogram("outcrop_invocation_latency_seconds", "Invocation latency", labels,
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.ttft = Histogram("outcrop_time_to_first_token_seconds", "Time to first token of streams", labels,
                              buckets=LATENCY_BUCKETS, registry=registry)

    def _labels(self, event: UsageEvent) -> tuple[str, str]:
        model_id = event["model_dim"]
        if model_id not in self._model_ids:
            if len(self._model_ids) >= MAX_MODEL_IDS:
                model_id = OTHER
            else:
                self._model_ids.add(model_id)
        region = event["source_region"] if event["source_region"] in self.regions else OTHER
        return model_id, region

    def _children(self, event: UsageEvent) -> _Series:
        key = (event["model_dim"], event["source_region"])
        series = self._series.get(key)
        if series is None:
            labels = self._labels(event)
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = _Series(
                    self.invocations.labels(*labels), self.input_tokens.labels(*labels),
                    self.output_tokens.labels(*labels), self.client_errors.labels(*labels),
                    self.server_errors.labels(*labels), self.throttles.labels(*labels),
                    self.cost.labels(*labels), self.latency.labels(*labels), self.ttft.labels(*labels),
                )
            if labels == key:  # keys counted under "other" are not kept: the cache stays bounded too
                self._series[key] = series
        return series

    def observe_later(self, event: UsageEvent) -> None:
        self._pending.append(event)

    def apply(self) -> None:
        """Observe every queued event (from any thread: each event is taken by exactly one caller)."""
        pending = self._pending
        while pending:
            try:
                event = pending.popleft()
            except IndexError:
                return
            self.observe(event)

    def observe(self, event: UsageEvent) -> None:
        series = self._children(event)
        outcome = event["outcome"]
        if outcome == "throttled":
            series.throttles.inc()
            return
        series.invocations.inc()
        if outcome == "client_error":
            series.client_errors.inc()
        elif outcome == "server_error":
            series.server_errors.inc()
        if event["input_tokens"]:
            series.input_tokens.inc(event["input_tokens"])
        if event["output_tokens"]:
            series.output_tokens.inc(event["output_tokens"])
        if event["cost_pusd"]:
            series.cost.inc(event["cost_pusd"] / PICO_PER_USD)
        series.latency.observe(event["latency_ms"] / 1000)
        if event["ttft_ms"] is not None:
            series.ttft.observe(event["ttft_ms"] / 1000)
