"""Prometheus metrics: one registry per application, rendered at ``GET /metrics``.

Each subsystem (routing, metering) registers its own collectors on ``Metrics.registry``; nothing is
global, so several apps in one process (tests) never share counters. Label values are bounded by the
subsystems that set them (catalogue model IDs, profile IDs, Regions), never by free text from requests.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


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
