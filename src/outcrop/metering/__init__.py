"""Metering: one durable usage event per invocation, rollups, prices, reports, metrics and budgets.

``meter`` (the pipeline and its guarantee), ``journal`` (the local fsync'd log), ``ingester`` (stores the
journal, by default in a process of its own), ``events`` (what an event holds), ``rollups`` (ingest),
``prices``, ``budgets``, ``queries`` (reports), ``metrics`` (Prometheus), ``endpoint``
(``/_outcrop/usage``), ``report`` (tables for the CLI).

The names below are imported when first used, so that the ingester process, which starts from this
package, loads only what it needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from outcrop.metering.meter import Meter
    from outcrop.metering.prices import Prices

__all__ = ["Meter", "Prices"]


def __getattr__(name: str) -> Any:
    if name == "Meter":
        from outcrop.metering.meter import Meter

        return Meter
    if name == "Prices":
        from outcrop.metering.prices import Prices

        return Prices
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
