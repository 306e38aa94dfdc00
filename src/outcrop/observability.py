"""Prometheus metrics: one registry per application, rendered at ``GET /metrics``.

Each subsystem (routing, metering) registers its own collectors on ``Metrics.registry``; nothing is
global, so several apps in one process (tests) never share counters. Label values are bounded by the
subsystems that set them (catalogue model IDs, profile IDs, Regions), never by free text from requests.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
