"""Prices: the source Region's price of the model, layered overrides, changes from a given time."""

from __future__ import annotations

from outcrop.control.catalog import Catalog
from outcrop.metering.prices import Prices, parse_rule
from outcrop.providers.messages import Usage

MICRO = "amazon.nova-micro-v1:0"
CATALOG = Catalog.load()


def test_costs_are_exact_pico_usd_at_the_source_regions_price() -> None:
    prices = Prices.load(CATALOG)
    assert prices.price(MICRO, "us-east-1", 0).cost(Usage(1_000_000, 1_000_000)) == (35_000 + 140_000) * 10**6
    assert prices.price(MICRO, "eu-west-1", 0).input == 46_000  # spec §11: EU 0.046 per 1M


def test_cache_tokens_are_priced_from_the_input_price_when_not_listed() -> None:
    price = Prices.load(CATALOG).price("anthropic.claude-3-haiku-20240307-v1:0", "us-east-1", 0)
    assert (price.cache_read, price.cache_write) == (25_000, 312_500)


def test_a_price_change_applies_from_its_effective_time_only() -> None:
    rule = {"model": MICRO, "input": 1, "output": 2, "effective_from": "2026-03-01T00:00:00Z"}
    prices = Prices.load(CATALOG, [rule])
    change_us = parse_rule(rule).effective_us
    assert prices.price(MICRO, "us-east-1", change_us - 1).input == 35_000
    assert prices.price(MICRO, "us-east-1", change_us).input == 1_000_000
