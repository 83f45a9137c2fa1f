"""Fixtures of the dashboard tests: the real Prometheus of tests/prometheus, re-exported."""

from tests.prometheus.conftest import prometheus_binary, start_prometheus

__all__ = ["prometheus_binary", "start_prometheus"]
