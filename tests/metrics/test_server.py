"""serve(): the real /metrics HTTP endpoint, scraped with httpx."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import polars as pl
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from monitor.metrics import PipelineMetrics, serve


def _frame() -> pl.DataFrame:
    at = datetime(2024, 3, 1, 10, 0, 0, tzinfo=UTC)
    return pl.DataFrame(
        {
            "occurred_at": [at, at],
            "channel": ["ATM", "POS"],
            "terminal_id": ["ATM00042", "POS00007"],
            "outcome": ["technical", "approved"],
            "tier": ["gold", None],
            "latency_ms": [2_500.0, None],
        },
        schema_overrides={"occurred_at": pl.Datetime("us", "UTC"), "tier": pl.String},
    )


def test_scrape_returns_current_samples():
    """A scrape of the served endpoint returns the text format with the batch's samples."""
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry, version="1.2.3")
    with serve(registry, "127.0.0.1", 0) as server:
        metrics.observe_batch(_frame())
        response = httpx.get(server.url, timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }
        assert samples[("cardmon_terminal_transactions_total", (("terminal_id", "ATM00042"),))] == 1
        assert samples[("cardmon_terminal_failures_total",
                        (("outcome", "technical"), ("terminal_id", "ATM00042")))] == 1
        assert samples[("cardmon_vip_failures_total",
                        (("outcome", "technical"), ("tier", "gold")))] == 1
        assert samples[("cardmon_authorization_latency_seconds_bucket",
                        (("channel", "ATM"), ("le", "3.0")))] == 1
        assert samples[("cardmon_authorization_latency_seconds_bucket",
                        (("channel", "ATM"), ("le", "2.0")))] == 0
        assert samples[("cardmon_build_info", (("version", "1.2.3"),))] == 1

        # A later batch shows up in the next scrape.
        metrics.observe_batch(_frame())
        again = httpx.get(server.url, timeout=10).text
        assert 'cardmon_terminal_transactions_total{terminal_id="ATM00042"} 2.0' in again


def test_close_stops_serving_and_is_idempotent():
    """After close() the port no longer answers, and a second close() is harmless."""
    registry = CollectorRegistry()
    PipelineMetrics(registry)
    server = serve(registry, "127.0.0.1", 0)
    assert server.port > 0
    assert repr(server) == f"MetricsServer(url='http://127.0.0.1:{server.port}/metrics', serving)"
    assert httpx.get(server.url, timeout=10).status_code == 200
    server.close()
    server.close()
    assert "closed" in repr(server)
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url, timeout=2)


def test_busy_port_raises():
    """Serving on a port already in use fails with OSError instead of serving nothing."""
    registry = CollectorRegistry()
    with serve(registry, "127.0.0.1", 0) as first, pytest.raises(OSError):
        serve(CollectorRegistry(), "127.0.0.1", first.port)
