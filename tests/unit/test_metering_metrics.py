"""Metering's Prometheus series: counters and histograms as prometheus_client would expose them."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from outcrop.metering import metrics as metering_metrics
from outcrop.metering.events import FIELDS
from outcrop.metering.metrics import MeteringMetrics
from outcrop.metering.prices import PICO_PER_USD

LABELS = {"model_id": "m", "region": "us-east-1"}


def _event(latency_ms: int, ttft_ms: int | None = None, outcome: str = "success", model: str = "m",
           region: str = "us-east-1", cost_pusd: int = 0) -> tuple:
    fields = {"model_dim": model, "source_region": region, "outcome": outcome, "input_tokens": 7,
              "output_tokens": 11, "cost_pusd": cost_pusd, "latency_ms": latency_ms, "ttft_ms": ttft_ms}
    return tuple(fields.get(f) for f in FIELDS)  # an event's values, as the meter passes them


def _observed(*events: tuple) -> CollectorRegistry:
    registry = CollectorRegistry()
    metering = MeteringMetrics(registry, ["us-east-1"])
    for event in events:
        metering.observe_later(event)
    metering.apply()
    return registry


def test_latency_falls_in_the_first_bucket_whose_bound_it_does_not_exceed():
    registry = _observed(_event(5), _event(12, ttft_ms=3), _event(70_000))

    def bucket(name: str, le: str) -> float | None:
        return registry.get_sample_value(f"{name}_bucket", {**LABELS, "le": le})

    latency = "outcrop_invocation_latency_seconds"
    assert bucket(latency, "0.005") == 1  # 5 ms is within the 0.005 bound
    assert bucket(latency, "0.01") == 1
    assert bucket(latency, "0.025") == 2  # cumulative, as Prometheus counts
    assert bucket(latency, "60.0") == 2
    assert bucket(latency, "+Inf") == 3
    assert registry.get_sample_value(f"{latency}_count", LABELS) == 3
    assert registry.get_sample_value(f"{latency}_sum", LABELS) == pytest.approx(70.017)
    ttft = "outcrop_time_to_first_token_seconds"
    assert bucket(ttft, "0.005") == 1 and bucket(ttft, "+Inf") == 1  # only the event that had one


def test_counters_by_outcome_tokens_and_cost():
    registry = _observed(
        _event(10, cost_pusd=3 * PICO_PER_USD // 2), _event(10, outcome="client_error"),
        _event(10, outcome="server_error"), _event(10, outcome="throttled"),
    )

    def total(name: str) -> float | None:
        return registry.get_sample_value(f"{name}_total", LABELS)

    assert total("outcrop_invocations") == 3  # throttled ones excluded, as CloudWatch counts
    assert total("outcrop_invocation_client_errors") == 1
    assert total("outcrop_invocation_server_errors") == 1
    assert total("outcrop_invocation_throttles") == 1
    assert total("outcrop_input_tokens") == 21 and total("outcrop_output_tokens") == 33
    assert total("outcrop_cost_usd") == 1.5


def test_the_exposition_declares_every_series_with_its_type():
    text = generate_latest(_observed(_event(10))).decode()
    for name in ("outcrop_invocations", "outcrop_input_tokens", "outcrop_output_tokens", "outcrop_cost_usd",
                 "outcrop_invocation_client_errors", "outcrop_invocation_server_errors",
                 "outcrop_invocation_throttles"):
        assert f"# TYPE {name}_total counter" in text or f"# TYPE {name} counter" in text
    assert "# TYPE outcrop_invocation_latency_seconds histogram" in text
    assert 'outcrop_invocations_total{model_id="m",region="us-east-1"} 1.0' in text


def test_label_values_are_bounded(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(metering_metrics, "MAX_MODEL_IDS", 2)
    registry = _observed(*(_event(10, model=f"m{i}") for i in range(5)), _event(10, model="m0", region="xx-nowhere-1"))
    assert registry.get_sample_value("outcrop_invocations_total", {"model_id": "m1", "region": "us-east-1"}) == 1
    assert registry.get_sample_value("outcrop_invocations_total", {"model_id": "other", "region": "us-east-1"}) == 3
    assert registry.get_sample_value("outcrop_invocations_total", {"model_id": "m0", "region": "other"}) == 1
