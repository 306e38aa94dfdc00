"""On-demand prices: which price applies to an invocation, and what it costs.

AWS bills an invocation through a profile (system or application) at the **source Region's** on-demand
price of the underlying foundation model, with no cross-Region surcharge (spec §9.3, §11); so does
outcrop. Prices come in three layers, most specific first:

1. ``[[prices]]`` in the config file (``model`` and ``region`` are globs, ``effective_from`` optional);
2. ``outcrop/data/prices.json``: Regional prices and cache prices that differ from the US price;
3. the US price kept with each model in the catalogue (``FoundationModel.price``).

Within a layer a rule for an exact Region beats a glob, and among the rules for one model and Region
the one with the latest ``effective_from`` not after the invocation's time applies. A price change is a
new rule with a later ``effective_from``: events already recorded keep the cost computed when they
happened (it is stored on the event), so history is never rewritten.

Costs are integers in pico-USD (10^-12 USD): a price of $0.035 per 1M tokens is exactly 35,000 pUSD
per token, so sums over millions of events are exact. Cache tokens default to Anthropic's ratios of
the input price (read 0.1 x, write 1.25 x) where no cache price is given.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from importlib import resources
from typing import Any

from outcrop.control.catalog import Catalog
from outcrop.providers.messages import Usage

PICO_PER_USD = 10**12
_PER_TOKEN = Decimal(10**6)  # USD per 1M tokens → pUSD per token
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
CACHE_READ_RATIO = Decimal("0.1")
CACHE_WRITE_RATIO = Decimal("1.25")


def pusd_per_token(usd_per_million: Decimal) -> int:
    return int((usd_per_million * _PER_TOKEN).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True)
class TokenPrice:
    """pUSD per token, for each kind of token."""

    input: int
    output: int
    cache_read: int
    cache_write: int

    def cost(self, usage: Usage) -> int:
        return (usage.input_tokens * self.input + usage.output_tokens * self.output
                + usage.cache_read_tokens * self.cache_read + usage.cache_write_tokens * self.cache_write)


FREE = TokenPrice(0, 0, 0, 0)


@dataclass(frozen=True)
class PriceRule:
    model: str
    region: str
    input: Decimal
    output: Decimal
    cache_read: Decimal | None
    cache_write: Decimal | None
    effective_us: int

    def token_price(self) -> TokenPrice:
        read = self.cache_read if self.cache_read is not None else self.input * CACHE_READ_RATIO
        write = self.cache_write if self.cache_write is not None else self.input * CACHE_WRITE_RATIO
        return TokenPrice(pusd_per_token(self.input), pusd_per_token(self.output),
                          pusd_per_token(read), pusd_per_token(write))


class PriceError(ValueError):
    """A price rule cannot be used; the message says which and why."""


def parse_rule(raw: Mapping[str, Any]) -> PriceRule:
    """One rule from the config file or the shipped data."""
    try:
        model = str(raw["model"])
        values = {k: _decimal(raw.get(k)) for k in ("input", "output", "cache_read", "cache_write")}
    except KeyError as e:
        raise PriceError(f"price rule {dict(raw)!r}: {e.args[0]} is required") from None
    if values["input"] is None or values["output"] is None:
        raise PriceError(f"price rule for {model}: input and output (USD per 1M tokens) are required")
    if any(v is not None and v < 0 for v in values.values()):
        raise PriceError(f"price rule for {model}: prices must not be negative")
    return PriceRule(model, str(raw.get("region") or "*"), values["input"], values["output"],  # type: ignore[arg-type]
                     values["cache_read"], values["cache_write"], _effective_us(raw.get("effective_from")))


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        raise PriceError(f"{value!r} is not a number") from None


def _effective_us(value: Any) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise PriceError(f"effective_from {value!r} is not an ISO-8601 time") from None
    if not isinstance(value, dt.datetime):
        raise PriceError(f"effective_from {value!r} is not a time")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (value - EPOCH) // dt.timedelta(microseconds=1)


def shipped_rules(catalog: Catalog) -> tuple[list[PriceRule], list[PriceRule]]:
    """The shipped layers: Regional/cache prices from ``prices.json``, then each model's US price."""
    data = json.loads((resources.files("outcrop.data") / "prices.json").read_text())
    regional = [parse_rule(r) for r in data["prices"]]
    base = [
        PriceRule(m.model_id, "*", Decimal(str(m.price.input)), Decimal(str(m.price.output)),
                  None if m.price.cache_read is None else Decimal(str(m.price.cache_read)),
                  None if m.price.cache_write is None else Decimal(str(m.price.cache_write)), 0)
        for m in catalog.models.values() if m.price is not None
    ]
    return regional, base


class Prices:
    """The one place that knows prices: ``price(model, source Region, time)``."""

    def __init__(self, layers: Iterable[Iterable[PriceRule]]) -> None:
        self._layers = [list(layer) for layer in layers]
        self._cache: dict[tuple[str, str], list[list[tuple[int, TokenPrice]]]] = {}

    @classmethod
    def load(cls, catalog: Catalog, overrides: Iterable[Mapping[str, Any]] = ()) -> Prices:
        regional, base = shipped_rules(catalog)
        return cls([[parse_rule(r) for r in overrides], regional, base])

    def price(self, model_id: str, region: str, at_us: int) -> TokenPrice:
        timelines = self._cache.get((model_id, region))
        if timelines is None:
            timelines = [self._timeline(layer, model_id, region) for layer in self._layers]
            self._cache[(model_id, region)] = timelines
        # The most specific layer with a rule in effect at that time (a future override leaves the
        # shipped price in force until its ``effective_from``).
        for timeline in timelines:
            chosen: TokenPrice | None = None
            for effective, price in timeline:
                if effective > at_us:
                    break
                chosen = price
            if chosen is not None:
                return chosen
        return FREE

    @staticmethod
    def _timeline(layer: list[PriceRule], model_id: str, region: str) -> list[tuple[int, TokenPrice]]:
        """A layer's prices for (model, Region) over time; a rule for the exact Region beats a glob."""
        rules = [r for r in layer if fnmatch.fnmatchcase(model_id, r.model) and fnmatch.fnmatchcase(region, r.region)]
        exact = [r for r in rules if r.region == region]
        return sorted(((r.effective_us, r.token_price()) for r in exact or rules), key=lambda p: p[0])
