"""Storm-control metrics read from the alert store."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from monitor.alerts.ratelimit import RateLimit
from monitor.alerts.store import AlertStore
from monitor.domain import Manager
from monitor.incidents import IncidentChange, IncidentRules
from monitor.metrics import StormMetrics
from tests.alerts.conftest import _make_failure

NOW = datetime(2026, 11, 2, 9, 0, 30, tzinfo=UTC)
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
RULES = IncidentRules.model_validate({"group_wait_seconds": 0, "scopes": {"terminal": {"min_failures": 5}}})
ANNA = Manager(manager_id="RM-1", name="Anna Berg", email="anna@bank.test")


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_metrics_follow_the_store_and_count_each_thing_once(store_location: Path | str) -> None:
    """Incidents by scope, open ones, sent notices, folded and capped alerts come from the store, not twice on a second refresh."""
    registry = CollectorRegistry()
    metrics = StormMetrics(registry)
    with AlertStore(store_location) as store:
        metrics.refresh(store)
        assert _value(registry, "cardmon_incidents_opened_total", scope="terminal") == 0
        opened = IncidentChange(kind="opened", incident_id="in-a", scope="terminal", scope_key="ATM-9",
                                started_at=T0, last_failure_at=T0, failures=6, cards=6, terminals=1)
        failures = [replace(_make_failure(f"e{n}", T0, customer_id=f"C{n}", manager=ANNA,
                                          outcome="technical", response_code="91"), incident_id="in-a")
                    for n in range(3)]
        store.record(failures, incidents=[opened], incident_rules=RULES, now=NOW)
        for row in store.claim_due(NOW, 10):
            store.mark_sent(row.delivery_id, NOW)
        lone = [_make_failure(f"x{n}", T0, customer_id=f"X{n}", manager=ANNA) for n in range(3)]
        store.record(lone, now=NOW, rate_limit=RateLimit(max_messages=2))
        metrics.refresh(store)
        metrics.refresh(store)
    assert _value(registry, "cardmon_incidents_opened_total", scope="terminal") == 1
    assert _value(registry, "cardmon_incidents_open", scope="terminal") == 1
    assert _value(registry, "cardmon_incident_notices_sent_total", kind="opened") == 1
    assert _value(registry, "cardmon_alerts_in_incidents_total") == 3
    assert _value(registry, "cardmon_alerts_merged_total") == 0  # linked at once: nothing to fold
    # Anna had one message (the notice); the cap of two lets one more alert through.
    assert _value(registry, "cardmon_alerts_rate_capped_total") == 2
    assert _value(registry, "cardmon_incidents_opened_total", scope="network") == 0
    assert "RM-1" not in str(list(registry.collect())) and "ATM-9" not in str(list(registry.collect()))


def test_a_restarted_monitor_starts_from_the_store_s_totals(tmp_path: Path) -> None:
    """A fresh registry over an existing store exports its totals at the first refresh."""
    with AlertStore(tmp_path / "alerts.db") as store:
        opened = IncidentChange(kind="opened", incident_id="in-b", scope="issuer", scope_key="412345",
                                started_at=T0, last_failure_at=T0, failures=30, cards=20, terminals=5)
        ended = replace(opened, kind="ended", ended_at=T0 + timedelta(minutes=3))
        store.record([], incidents=[opened, ended], incident_rules=RULES, now=NOW)
        registry = CollectorRegistry()
        StormMetrics(registry).refresh(store)
    assert _value(registry, "cardmon_incidents_opened_total", scope="issuer") == 1
    assert _value(registry, "cardmon_incidents_open", scope="issuer") == 0
