"""Prometheus series of the runtime, as CloudWatch's ``AWS/Bedrock`` namespace names them.

Labels: ``model_id`` (the ModelId dimension: a profile's ID as AWS uses it, or the model ID of a direct
call) and ``region`` (the source Region, where AWS emits metrics). Cardinality is bounded: at most
``MAX_MODEL_IDS`` distinct ModelId values and the catalogue's Regions; anything beyond is counted under
``other``, so no caller can grow the series without bound.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram

from outcrop.metering.events import UsageEvent
from outcrop.metering.prices import PICO_PER_USD

MAX_MODEL_IDS = 1000
OTHER = "other"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class MeteringMetrics:
    def __init__(self, registry: CollectorRegistry, regions: Iterable[str]) -> None:
        labels = ("model_id", "region")
        self.regions = frozenset(regions)
        self._model_ids: set[str] = set()
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

    def observe(self, event: UsageEvent) -> None:
        labels = self._labels(event)
        outcome = event["outcome"]
        if outcome == "throttled":
            self.throttles.labels(*labels).inc()
            return
        self.invocations.labels(*labels).inc()
        if outcome == "client_error":
            self.client_errors.labels(*labels).inc()
        elif outcome == "server_error":
            self.server_errors.labels(*labels).inc()
        if event["input_tokens"]:
            self.input_tokens.labels(*labels).inc(event["input_tokens"])
        if event["output_tokens"]:
            self.output_tokens.labels(*labels).inc(event["output_tokens"])
        if event["cost_pusd"]:
            self.cost.labels(*labels).inc(event["cost_pusd"] / PICO_PER_USD)
        self.latency.labels(*labels).observe(event["latency_ms"] / 1000)
        if event["ttft_ms"] is not None:
            self.ttft.labels(*labels).observe(event["ttft_ms"] / 1000)
