"""The recovery watch's metrics: decisions by result, outcome class and channel; time to recover."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from monitor.alerts.store import Recovery
from monitor.metrics import RecoveryMetrics

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _recovery(alert_id: str, *, seconds: float | None, outcome: str = "terminal") -> Recovery:
    return Recovery(
        alert_id=alert_id, customer_id="C-SECRET-1", manager_id="RM-1", channel="ATM",
        txn_type="withdrawal", outcome=outcome, failed_terminal_id="ATM1", first_failed_at=T0,
        last_failed_at=T0, window_ends_at=T0 + timedelta(minutes=30),
        status="watching" if seconds is None else "recovered",
        recovered_at=None if seconds is None else T0 + timedelta(seconds=seconds),
        terminal_id=None if seconds is None else "ATM2")


def test_decisions_are_counted_by_result_outcome_and_channel_without_ids() -> None:
    """Each decision counts once under its labels; recoveries observe their seconds; no ID label."""
    registry = CollectorRegistry()
    metrics = RecoveryMetrics(registry)
    metrics.observe_recovered([_recovery("a1", seconds=180), _recovery("a2", seconds=900)])
    metrics.observe_abandoned([_recovery("a3", seconds=None, outcome="technical")])
    value = registry.get_sample_value
    assert value("cardmon_vip_recoveries_total",
                 {"result": "recovered", "outcome": "terminal", "channel": "ATM"}) == 2
    assert value("cardmon_vip_recoveries_total",
                 {"result": "abandoned", "outcome": "technical", "channel": "ATM"}) == 1
    assert value("cardmon_vip_recovery_seconds_count") == 2
    assert value("cardmon_vip_recovery_seconds_sum") == 1080
    assert value("cardmon_vip_recovery_seconds_bucket", {"le": "180.0"}) == 1
    labels = {v for family in registry.collect() for s in family.samples for v in s.labels.values()}
    assert not labels & {"C-SECRET-1", "RM-1", "a1", "ATM1", "ATM2"}
