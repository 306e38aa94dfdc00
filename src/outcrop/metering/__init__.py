"""Metering: one durable usage event per invocation, rollups, prices, reports, metrics and budgets.

``meter`` (the pipeline and its guarantee), ``journal`` (the local fsync'd log), ``events`` (what an
event holds), ``rollups`` (ingest), ``prices``, ``budgets``, ``queries`` (reports), ``metrics``
(Prometheus), ``endpoint`` (``/_outcrop/usage``), ``report`` (tables for the CLI).
"""

from outcrop.metering.meter import Meter
from outcrop.metering.prices import Prices

__all__ = ["Meter", "Prices"]
