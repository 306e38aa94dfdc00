"""Prometheus series of the runtime, as CloudWatch's ``AWS/Bedrock`` namespace names them.

Labels: ``model_id`` (the ModelId dimension: a profile's ID as AWS uses it, or the model ID of a direct
call) and ``region`` (the source Region, where AWS emits metrics). Cardinality is bounded: at most
``MAX_MODEL_IDS`` distinct ModelId values and the catalogue's Regions; anything beyond is counted under
``other``, so no caller can grow the series without bound. The labelled children of each (ModelId,
Region) are plain counters (``_Series``), which this module reports itself as a Prometheus collector:
an observation is a few additions, where prometheus_client's own metrics take a lock and make a method
call per counter (at c=16 in bench/runtime that was a stall of about a millisecond on the event loop
four times a second).

Observations are made off the request path: an invocation only queues its event (``observe_later``);
the event loop applies the queue every quarter second while events come (``Meter._tick``), and
``/metrics`` applies what is left before it renders. Applied one by one as requests come in, cold, they cost an invocation several times what they
cost applied together (bench/runtime).
"""

from __future__ import annotations

import collections
import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from outcrop.metering.events import INDEX
from outcrop.metering.prices import PICO_PER_USD

# Where each figure is in an event's values (``outcrop.metering.events.FIELDS``).
_DIM, _REGION, _OUTCOME, _IN, _OUT, _COST, _LATENCY, _TTFT = (INDEX[f] for f in (
    "model_dim", "source_region", "outcome", "input_tokens", "output_tokens", "cost_pusd", "latency_ms", "ttft_ms"))

MAX_MODEL_IDS = 1000
OTHER = "other"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BUCKET_LABELS = (*map(str, LATENCY_BUCKETS), "+Inf")  # each bucket's ``le``, as prometheus_client writes it
LABELS = ("model_id", "region")
# (name, help) of each counter, in the order of ``_Series.counts``; the samples are ``<name>_total``.
COUNTERS = (
    ("outcrop_invocations", "Invocations (throttled ones excluded, as CloudWatch counts)"),
    ("outcrop_input_tokens", "Input tokens"),
    ("outcrop_output_tokens", "Output tokens"),
    ("outcrop_invocation_client_errors", "Invocations that failed with a client error"),
    ("outcrop_invocation_server_errors", "Invocations that failed with a server error"),
    ("outcrop_invocation_throttles", "Throttled invocations"),
)
INVOCATIONS, INPUT, OUTPUT, CLIENT_ERRORS, SERVER_ERRORS, THROTTLES = range(len(COUNTERS))


class _Histogram:
    __slots__ = ("buckets", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect_left(LATENCY_BUCKETS, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, count in zip(BUCKET_LABELS, self.buckets, strict=True):
            total += count
            out.append((bound, total))
        return out


class _Series:
    """The figures of one (ModelId, Region) label pair."""

    __slots__ = ("cost_pusd", "counts", "latency", "ttft")

    def __init__(self) -> None:
        self.counts = [0] * len(COUNTERS)
        self.cost_pusd = 0
        self.latency = _Histogram()
        self.ttft = _Histogram()


class MeteringMetrics:
    """A Prometheus collector of the series above, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry, regions: Iterable[str]) -> None:
        self.regions = frozenset(regions)
        self._model_ids: set[str] = set()
        self._series: dict[tuple[str, str], _Series] = {}  # by label values
        self._by_event: dict[tuple[str, str], _Series] = {}  # by the event's own (ModelId, Region)
        self._pending: collections.deque[tuple[Any, ...]] = collections.deque()
        self._lock = threading.Lock()
        registry.register(self)

    def _labels(self, event: tuple[Any, ...]) -> tuple[str, str]:
        model_id = event[_DIM]
        if model_id not in self._model_ids:
            if len(self._model_ids) >= MAX_MODEL_IDS:
                model_id = OTHER
            else:
                self._model_ids.add(model_id)
        region = event[_REGION] if event[_REGION] in self.regions else OTHER
        return model_id, region

    def _children(self, event: tuple[Any, ...]) -> _Series:
        key = (event[_DIM], event[_REGION])
        series = self._by_event.get(key)
        if series is None:
            labels = self._labels(event)
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = _Series()
            if labels == key:  # keys counted under "other" are not kept: the cache stays bounded too
                self._by_event[key] = series
        return series

    def observe_later(self, event: tuple[Any, ...]) -> None:
        self._pending.append(event)

    def apply(self) -> None:
        """Observe every queued event (from any thread: each event is taken by exactly one caller)."""
        pending = self._pending
        with self._lock:
            while pending:
                try:
                    event = pending.popleft()
                except IndexError:
                    return
                self.observe(event)

    def observe(self, event: tuple[Any, ...]) -> None:
        series = self._children(event)
        counts = series.counts
        outcome = event[_OUTCOME]
        if outcome == "throttled":
            counts[THROTTLES] += 1
            return
        counts[INVOCATIONS] += 1
        if outcome == "client_error":
            counts[CLIENT_ERRORS] += 1
        elif outcome == "server_error":
            counts[SERVER_ERRORS] += 1
        counts[INPUT] += event[_IN]
        counts[OUTPUT] += event[_OUT]
        series.cost_pusd += event[_COST]
        series.latency.observe(event[_LATENCY] / 1000)
        ttft = event[_TTFT]
        if ttft is not None:
            series.ttft.observe(ttft / 1000)

    # -- prometheus_client's Collector ----------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        with self._lock:
            series = [(list(labels), s.counts.copy(), s.cost_pusd, s.latency.cumulative(), s.latency.sum,
                       s.ttft.cumulative(), s.ttft.sum) for labels, s in self._series.items()]
        for i, (name, documentation) in enumerate(COUNTERS):
            family = CounterMetricFamily(name, documentation, labels=LABELS)
            for labels, counts, *_ in series:
                family.add_metric(labels, counts[i])
            yield family
        cost = CounterMetricFamily("outcrop_cost_usd", "On-demand cost in USD, at the source Region's price",
                                   labels=LABELS)
        for labels, _, cost_pusd, *_ in series:
            cost.add_metric(labels, cost_pusd / PICO_PER_USD)
        yield cost
        latency = HistogramMetricFamily("outcrop_invocation_latency_seconds", "Invocation latency", labels=LABELS)
        ttft = HistogramMetricFamily("outcrop_time_to_first_token_seconds", "Time to first token of streams",
                                     labels=LABELS)
        for labels, _, _, latency_buckets, latency_sum, ttft_buckets, ttft_sum in series:
            latency.add_metric(labels, latency_buckets, latency_sum)
            ttft.add_metric(labels, ttft_buckets, ttft_sum)
        yield latency
        yield ttft
