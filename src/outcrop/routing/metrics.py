"""The router's state in Prometheus form, read at scrape time (nothing is updated per request).

Labels are bounded: Regions and model IDs come from the catalogue, deployment names from the config.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from outcrop.routing.health import STATE_VALUES
from outcrop.routing.router import Router

LABELS = ["region", "model", "deployment"]


class RoutingCollector(Collector):
    def __init__(self, router: Router) -> None:
        self.router = router

    def collect(self) -> Iterator[Metric]:
        breaker = GaugeMetricFamily(
            "outcrop_routing_breaker_state", "Circuit breaker per deployment: 0 closed, 1 half-open, 2 open.",
            labels=LABELS,
        )
        outstanding = GaugeMetricFamily(
            "outcrop_routing_outstanding_requests", "Requests in progress per deployment.", labels=LABELS
        )
        attempts = CounterMetricFamily(
            "outcrop_routing_attempts", "Calls to a deployment by outcome "
            "(success, failure, throttled, client_error).", labels=[*LABELS, "outcome"],
        )
        for pool in self.router.pools.values():
            for d in pool:
                labels = [d.region, d.model_id, d.name]
                breaker.add_metric(labels, STATE_VALUES[d.breaker.state])
                outstanding.add_metric(labels, d.capacity.outstanding)
                for outcome, count in sorted(d.outcomes.items()):
                    attempts.add_metric([*labels, outcome], count)
        failovers = CounterMetricFamily(
            "outcrop_routing_failovers", "Attempts made on another deployment after a failure."
        )
        failovers.add_metric([], self.router.failovers)
        rejections = CounterMetricFamily(
            "outcrop_routing_rejections", "Invocations refused by the router (capacity, deadline).",
            labels=["reason"],
        )
        for reason in ("capacity", "deadline"):
            rejections.add_metric([reason], self.router.rejections[reason])
        waiting = GaugeMetricFamily("outcrop_routing_waiting_requests", "Requests waiting for capacity.")
        waiting.add_metric([], self.router.waiting)
        yield from (breaker, outstanding, attempts, failovers, rejections, waiting)
