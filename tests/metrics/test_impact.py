"""Repair priority in Prometheus: the top terminals by VIP impact per window, from the store, bounded."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from monitor.alerts.store import AlertStore
from monitor.domain import VipFailure
from monitor.metrics import IMPACT_TOP_N, TerminalImpactMetrics
from tests.alerts.conftest import _make_failure

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
OWN = ("technical", "terminal", "card")


def _failure(n: int, terminal: str, customer: str, at: datetime) -> VipFailure:
    return _make_failure(f"ev-{n}", at, customer_id=customer, customer_name=f"Client {customer}",
                         terminal_id=terminal, outcome="technical", response_code=None)


def test_each_window_exports_its_terminals_clients_failures_and_managers(tmp_path: Path) -> None:
    """A failure two days ago counts in 7d only; one an hour ago in both; labels are terminal and window only."""
    registry = CollectorRegistry()
    metrics = TerminalImpactMetrics(registry, OWN)
    assert registry.get_sample_value("cardmon_terminal_vip_impact_clients",
                                     {"terminal_id": "ATM-1", "window": "24h"}) is None
    with AlertStore(tmp_path / "alerts.db") as store:
        store.record([_failure(1, "ATM-1", "C-1", NOW - timedelta(hours=1)),
                      _failure(2, "ATM-1", "C-2", NOW - timedelta(days=2)),
                      _failure(3, "ATM-1", "C-2", NOW - timedelta(days=2, minutes=5))], now=NOW)
        metrics.refresh(store, NOW)
    value = registry.get_sample_value
    assert value("cardmon_terminal_vip_impact_clients", {"terminal_id": "ATM-1", "window": "24h"}) == 1
    assert value("cardmon_terminal_vip_impact_clients", {"terminal_id": "ATM-1", "window": "7d"}) == 2
    assert value("cardmon_terminal_vip_impact_failures", {"terminal_id": "ATM-1", "window": "7d"}) == 3
    assert value("cardmon_terminal_vip_impact_managers", {"terminal_id": "ATM-1", "window": "7d"}) == 1
    text = generate_latest(registry).decode()
    assert "C-1" not in text and "RM-017" not in text  # no client or manager in any label


def test_only_the_top_terminals_are_exported_and_a_dropped_one_loses_its_series(tmp_path: Path) -> None:
    """With more terminals than the top N, the least hurt are left out; after they age out, their series are gone."""
    registry = CollectorRegistry()
    metrics = TerminalImpactMetrics(registry, OWN)
    with AlertStore(tmp_path / "alerts.db") as store:
        failures = [_failure(n * 10 + c, f"ATM-{n:02d}", f"C-{n}-{c}", NOW - timedelta(hours=2))
                    for n in range(IMPACT_TOP_N + 2) for c in range(n + 1)]  # ATM-n hurts n+1 clients
        store.record(failures, now=NOW)
        metrics.refresh(store, NOW)
        exported = {s.labels["terminal_id"] for f in registry.collect() for s in f.samples
                    if f.name == "cardmon_terminal_vip_impact_clients" and s.labels["window"] == "24h"}
        assert exported == {f"ATM-{n:02d}" for n in range(2, IMPACT_TOP_N + 2)}
        metrics.refresh(store, NOW + timedelta(days=8))
    assert not [s for f in registry.collect() for s in f.samples if f.name.startswith("cardmon_terminal_vip")]
