"""Prometheus metrics: one registry per application, rendered at ``GET /metrics``.

Each subsystem (routing, metering) registers its own collectors on ``Metrics.registry``; nothing is
global, so several apps in one process (tests) never share counters. Label values are bounded by the
subsystems that set them (catalogue model IDs, profile IDs, Regions), never by free text from requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from outcrop.workers import Family, merge_metrics


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Called before each rendering: subsystems that record off the request path bring their series
        # up to date here, so a scrape sees every invocation answered before it.
        self.before_render: list[Callable[[], None]] = []

    def render(self) -> tuple[bytes, str]:
        for update in self.before_render:
            update()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def families(self) -> list[Family]:
        """Every series, as plain values: what a worker hands the one answering a scrape."""
        for update in self.before_render:
            update()
        return [
            (m.name, m.type, m.documentation, [(s.name, s.labels, s.value) for s in m.samples])
            for m in self.registry.collect()
        ]

    def render_with(self, others: Iterable[list[Family]]) -> tuple[bytes, str]:
        """This process's series summed with other workers' (``outcrop.workers.merge_metrics``)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(merge_metrics([self.families(), *others])))
        return generate_latest(registry), CONTENT_TYPE_LATEST


class _Families(Collector):
    def __init__(self, families: list[Family]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        for name, kind, documentation, samples in self._families:
            metric = Metric(name, documentation, kind)
            for sample, labels, value in samples:
                metric.add_sample(sample, labels, value)
            yield metric
