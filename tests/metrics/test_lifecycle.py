"""Alert lifecycle metrics: acknowledgements, escalations, resolutions and states, read from a real store."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from monitor.alerts.store import AlertStore
from monitor.app import MonitorApp
from monitor.config import isolated_settings
from monitor.domain import AlertEvent, Manager, VipFailure
from monitor.metrics import AlertLifecycleMetrics
from monitor.testing.broker import free_port

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MANAGER = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example",
                  timezone="Europe/Paris")
BACKUP = Manager(manager_id="RM-018", name="Hugo Petit", email="hugo.petit@bank.example",
                 timezone="Europe/Paris")


def failure(n: int, severity: str) -> VipFailure:
    """A VIP failure of client C-00n at an ATM in Paris, at T0 + n minutes."""
    return VipFailure(
        event=AlertEvent(
            event_id=f"sw-{n}", occurred_at=T0 + timedelta(minutes=n), channel="ATM",
            terminal_id="ATM00042", merchant_id=None, txn_type="withdrawal", amount_minor=20000,
            currency="EUR", response_code="91", outcome="technical",
            response_meaning="Issuer or switch is inoperative", status="completed",
            card_ref="tok_9f2c1e", pan_masked="411111******1111", city="Paris", latency_ms=420.0,
        ),
        customer_id=f"C-00{n}", customer_name=f"Client {n}", tier="private", manager=MANAGER,
        severity=severity,  # type: ignore[arg-type]
        suggested_action="Call the client.",
    )


def _record(store: AlertStore, *severities: str) -> list[str]:
    """Record one alert per severity (clients in different windows); return their IDs in order."""
    ids = []
    for n, severity in enumerate(severities):
        result = store.record([failure(n * 10, severity)], channels=("email",), now=T0)
        ids.extend(result.new_alert_ids)
    return ids


def test_acknowledgements_escalations_and_resolutions_are_counted_once(store_location: Path | str) -> None:
    """Each history row counts once per severity, channel and step, with its time to acknowledge, across refreshes."""
    registry = CollectorRegistry()
    metrics = AlertLifecycleMetrics(registry)
    value = registry.get_sample_value
    with AlertStore(store_location) as store:
        high, also_high, medium, low = _record(store, "high", "high", "medium", "low")
        assert store.escalate(high, 0, recipient=BACKUP, note="step 1", at=T0 + timedelta(minutes=15))
        assert store.escalate(high, 1, recipient=None, note="step 2", at=T0 + timedelta(minutes=30)) == 0
        assert store.escalate(also_high, 0, recipient=None, note="step 1",
                              at=T0 + timedelta(minutes=15)) == 0
        store.acknowledge(high, by="RM-018", via="link", at=T0 + timedelta(minutes=40))
        store.acknowledge(medium, by="RM-017", via="api", at=T0 + timedelta(seconds=90))
        store.acknowledge(medium, by="RM-017", via="api", at=T0 + timedelta(minutes=2))  # no change
        store.acknowledge(low, by="ops", via="pager", at=T0 + timedelta(seconds=20))
        store.resolve(medium, by="RM-017", via="cli", note="card reissued", at=T0 + timedelta(minutes=5))

        assert metrics.refresh(store) == 7
        assert metrics.refresh(store) == 0  # nothing new: nothing counted twice

        assert value("cardmon_alerts_acknowledged_total", {"severity": "high", "via": "link"}) == 1
        assert value("cardmon_alerts_acknowledged_total", {"severity": "medium", "via": "api"}) == 1
        assert value("cardmon_alerts_acknowledged_total", {"severity": "low", "via": "other"}) == 1
        assert value("cardmon_alerts_acknowledged_total", {"severity": "high", "via": "cli"}) == 0
        assert value("cardmon_alerts_escalated_total", {"severity": "high", "step": "1"}) == 2
        assert value("cardmon_alerts_escalated_total", {"severity": "high", "step": "2"}) == 1
        assert value("cardmon_alerts_resolved_total", {"severity": "medium"}) == 1
        assert value("cardmon_alerts_resolved_total", {"severity": "high"}) == 0
        # Alerts were recorded at T0: 40 min, 90 s and 20 s to acknowledge.
        ttack = "cardmon_alert_time_to_acknowledge_seconds"
        assert value(f"{ttack}_sum", {"severity": "high"}) == 2400
        assert value(f"{ttack}_bucket", {"severity": "high", "le": "1800.0"}) == 0
        assert value(f"{ttack}_bucket", {"severity": "high", "le": "3600.0"}) == 1
        assert value(f"{ttack}_bucket", {"severity": "medium", "le": "60.0"}) == 0
        assert value(f"{ttack}_bucket", {"severity": "medium", "le": "120.0"}) == 1
        assert value(f"{ttack}_count", {"severity": "low"}) == 1

        assert value("cardmon_stored_alerts", {"state": "acknowledged", "severity": "high"}) == 1
        assert value("cardmon_stored_alerts", {"state": "open", "severity": "high"}) == 1
        assert value("cardmon_stored_alerts", {"state": "resolved", "severity": "medium"}) == 1
        assert value("cardmon_stored_alerts", {"state": "acknowledged", "severity": "low"}) == 1
        assert value("cardmon_stored_alerts", {"state": "failed", "severity": "low"}) == 0

        assert value("cardmon_alert_resolution_outcomes_total", {"outcome": "none"}) == 1  # a note alone
        store.resolve(high, by="RM-018", via="workspace", note="switch back", outcome="called_client",
                      at=T0 + timedelta(hours=1))
        assert metrics.refresh(store) == 1
    assert value("cardmon_alerts_resolved_total", {"severity": "high"}) == 1
    assert value("cardmon_alert_resolution_outcomes_total", {"outcome": "called_client"}) == 1
    assert value("cardmon_alert_resolution_outcomes_total", {"outcome": "card_replaced"}) == 0
    # The called_client resolution an hour after recording is the first contact; a note alone is not.
    assert value("cardmon_alert_time_to_first_contact_seconds_count", {"severity": "high"}) == 1
    assert value("cardmon_alert_time_to_first_contact_seconds_sum", {"severity": "high"}) == 3600
    assert value("cardmon_alert_time_to_first_contact_seconds_count", {"severity": "medium"}) == 0
    assert value("cardmon_stored_alerts", {"state": "acknowledged", "severity": "high"}) == 0
    assert value("cardmon_stored_alerts", {"state": "resolved", "severity": "high"}) == 1


def test_escalation_steps_of_the_policy_start_at_zero() -> None:
    """The steps the escalation policy can take are exported at zero before the first one, so increase() counts it."""
    registry = CollectorRegistry()
    AlertLifecycleMetrics(registry, escalation_severities=("high",), escalation_steps=2)
    for step in ("1", "2"):
        assert registry.get_sample_value("cardmon_alerts_escalated_total",
                                         {"severity": "high", "step": step}) == 0
    assert registry.get_sample_value("cardmon_alerts_escalated_total",
                                     {"severity": "high", "step": "3"}) is None


def test_a_new_process_continues_the_counts_of_the_store(tmp_path: Path) -> None:
    """A restarted monitor's first refresh counts the whole history, so the counters do not fall back to zero."""
    path = tmp_path / "alerts.db"
    with AlertStore(path) as store:
        for alert_id in _record(store, "high", "high", "low"):
            store.acknowledge(alert_id, by="RM-017", via="api", at=T0 + timedelta(minutes=1))
        first = CollectorRegistry()
        AlertLifecycleMetrics(first).refresh(store)
    with AlertStore(path) as reopened:
        second = CollectorRegistry()
        AlertLifecycleMetrics(second).refresh(reopened)
    labels = {"severity": "high", "via": "api"}
    assert first.get_sample_value("cardmon_alerts_acknowledged_total", labels) == 2
    assert second.get_sample_value("cardmon_alerts_acknowledged_total", labels) == 2


def test_lifecycle_series_carry_no_alert_client_or_manager_id(tmp_path: Path) -> None:
    """The exposition names severities, states, channels and steps, never an alert, client, manager or person."""
    registry = CollectorRegistry()
    metrics = AlertLifecycleMetrics(registry)
    with AlertStore(tmp_path / "alerts.db") as store:
        ids = _record(store, "high", "medium")
        store.escalate(ids[0], 0, recipient=BACKUP, note="step 1", at=T0 + timedelta(minutes=15))
        store.acknowledge(ids[0], by="Claire Martin", via="link", at=T0 + timedelta(minutes=20))
        store.acknowledge(ids[1], by="RM-017", via="cli", at=T0 + timedelta(minutes=20))
        metrics.refresh(store)
    text = generate_latest(registry).decode()
    assert "cardmon_alerts_acknowledged_total" in text
    for secret in (*ids, "C-000", "C-0010", "RM-017", "RM-018", "Claire", "tok_9f2c1e", "411111"):
        assert secret not in text, secret


@pytest.mark.integration
@pytest.mark.timeout(90)
async def test_acknowledgements_from_the_api_and_the_cli_reach_the_monitors_metrics(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    """An alert acknowledged through the monitor's API and one through `cardmon alerts ack` (another process) both show on /metrics within a refresh."""
    store_path = tmp_path / "alerts.db"
    with AlertStore(store_path) as store:
        by_api, by_cli = _record(store, "high", "medium")
    metrics_port, api_port = free_port(), free_port()
    settings = isolated_settings(
        kafka={"bootstrap_servers": kafka_bootstrap, "topic": f"tx.{unique_name}",
               "dead_letter_topic": f"tx.{unique_name}.dlq", "group_id": f"lc-{unique_name}"},
        alerting={"store_path": store_path, "escalation_interval_seconds": 3600},
        health={"status_topic": f"st.{unique_name}", "status_dead_letter_topic": f"st.{unique_name}.dlq"},
        metrics={"host": "127.0.0.1", "port": metrics_port},
        api={"host": "127.0.0.1", "port": api_port, "token": "api-token-for-lifecycle-tests"},
    )
    monitor = MonitorApp(settings, metrics_registry=CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDMON_")}
    try:
        async with httpx.AsyncClient() as http:
            async def post_ack() -> int:
                try:
                    response = await http.post(
                        f"http://127.0.0.1:{api_port}/alerts/{by_api}/ack", json={"by": "RM-017"},
                        headers={"Authorization": "Bearer api-token-for-lifecycle-tests"}, timeout=5)
                except httpx.TransportError:
                    return 0
                return response.status_code

            deadline = asyncio.get_running_loop().time() + 30
            while await post_ack() != 200:
                assert asyncio.get_running_loop().time() < deadline, "the API never answered"
                await asyncio.sleep(0.2)
            cli = await asyncio.to_thread(
                subprocess.run,
                [str(Path(sys.executable).parent / "cardmon"), "alerts", "ack", by_cli, "--by", "RM-017",
                 "--store", str(store_path)], capture_output=True, text=True, timeout=60, env=env)
            assert cli.returncode == 0, cli.stderr

            wanted = ('cardmon_alerts_acknowledged_total{severity="high",via="api"} 1.0',
                      'cardmon_alerts_acknowledged_total{severity="medium",via="cli"} 1.0',
                      'cardmon_stored_alerts{severity="high",state="acknowledged"} 1.0')
            body = ""
            deadline = asyncio.get_running_loop().time() + 20
            while not all(line in body for line in wanted):
                assert asyncio.get_running_loop().time() < deadline, body[-3000:]
                await asyncio.sleep(0.5)
                body = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)).text
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    assert 'cardmon_alert_time_to_acknowledge_seconds_count{severity="medium"} 1.0' in body
