"""Cross-Region routing: candidate order, capacity, failover and health (see ``router``)."""

from outcrop.routing.router import Router

__all__ = ["Router"]
