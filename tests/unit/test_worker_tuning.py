"""What a server worker does beyond serving: process-wide tuning, and Prometheus observations made off the
request path but never missed by a scrape."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from outcrop.app import GC_THRESHOLDS, _tune_worker, create_app, factory
from outcrop.config import Config, ConfigError, load_config
from outcrop.metering.events import FIELDS
from outcrop.metering.metrics import MeteringMetrics
from outcrop.observability import Metrics


@pytest.fixture
def restore_process_state():
    interval = sys.getswitchinterval()
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    sys.setswitchinterval(interval)


def test_a_server_worker_sets_the_switch_interval_and_freezes_what_it_loaded(restore_process_state):
    _tune_worker(Config(switch_interval_ms=2.0))
    assert sys.getswitchinterval() == pytest.approx(0.002)
    assert gc.get_freeze_count() > 0  # objects loaded so far are no longer walked by full collections
    assert gc.get_threshold() == GC_THRESHOLDS  # young collections rare enough not to promote requests in flight


def test_only_the_server_entry_point_tunes_the_process(tmp_path, monkeypatch):
    monkeypatch.setenv("OUTCROP_DATA_DIR", str(tmp_path))
    assert factory().serving is True
    assert create_app(Config(data_dir=tmp_path)).serving is False  # embedded: the host process is left alone


@pytest.mark.parametrize("value", ["0", "0.001", "101", "-1"])
def test_switch_interval_out_of_range_is_a_config_error(tmp_path, monkeypatch, value):
    monkeypatch.setenv("OUTCROP_SWITCH_INTERVAL_MS", value)
    with pytest.raises(ConfigError, match="switch_interval_ms"):
        load_config()


def test_switch_interval_from_the_file_and_the_environment(tmp_path: Path, monkeypatch):
    path = tmp_path / "outcrop.toml"
    path.write_text("switch_interval_ms = 1.5\n")
    assert load_config(path).switch_interval_ms == 1.5
    monkeypatch.setenv("OUTCROP_SWITCH_INTERVAL_MS", "0.25")
    assert load_config(path).switch_interval_ms == 0.25


def _event(model: str, outcome: str = "success") -> tuple:
    fields = {"model_dim": model, "source_region": "us-east-1", "outcome": outcome, "input_tokens": 3,
              "output_tokens": 5, "cost_pusd": 0, "latency_ms": 12, "ttft_ms": None}
    return tuple(fields.get(f) for f in FIELDS)  # an event's values, as the meter passes them


def test_queued_observations_are_applied_before_a_scrape_renders():
    metrics = Metrics()
    metering = MeteringMetrics(metrics.registry, ["us-east-1"])
    metrics.before_render.append(metering.apply)
    metering.observe_later(_event("m1"))
    metering.observe_later(_event("m1"))
    metering.observe_later(_event("m1", "throttled"))
    # Nothing is counted until the queue is applied...
    assert metrics.registry.get_sample_value("outcrop_invocations_total", {"model_id": "m1", "region": "us-east-1"}) is None
    # ...and a scrape applies it first.
    text = metrics.render()[0].decode()
    assert 'outcrop_invocations_total{model_id="m1",region="us-east-1"} 2.0' in text
    assert 'outcrop_invocation_throttles_total{model_id="m1",region="us-east-1"} 1.0' in text
    assert 'outcrop_output_tokens_total{model_id="m1",region="us-east-1"} 10.0' in text


def test_each_queued_observation_is_applied_once():
    registry = CollectorRegistry()
    metering = MeteringMetrics(registry, ["us-east-1"])
    for _ in range(5):
        metering.observe_later(_event("m2"))
    metering.apply()
    metering.apply()  # the metering thread and a scrape may both apply: nothing is counted twice
    assert registry.get_sample_value("outcrop_invocations_total", {"model_id": "m2", "region": "us-east-1"}) == 5
