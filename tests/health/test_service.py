"""Terminal health wired into the running monitor: transactions and device status move the states."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from monitor.app import MonitorApp
from monitor.config import isolated_settings
from monitor.testing.broker import free_port
from monitor.testing.fixtures import wait_until
from tests.helpers import encode, event, write_registry


def _samples(url: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = httpx.get(url, timeout=10).text
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name}


async def test_failing_atm_and_offline_network_show_in_health_metrics(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    """An ATM failing every transaction is `failing` (2); one whose network went offline is `offline` (4)."""
    customers, managers = write_registry(
        tmp_path / "registry", "customer_id,name,tier,manager_id,card_refs\nC-1,Ann Lee,gold,M-1,",
        "manager_id,name,email,phone,webhook_url,backup_manager_id,timezone\nM-1,Bo Chan,,,,,UTC")
    port = free_port()
    settings = isolated_settings(
        kafka={"bootstrap_servers": kafka_bootstrap, "topic": f"tx-{unique_name}",
               "dead_letter_topic": f"dlq-{unique_name}", "group_id": f"g-{unique_name}",
               "batch_timeout_ms": 100},
        registry={"customers_path": customers, "managers_path": managers},
        alerting={"store_path": tmp_path / "alerts.db"},
        health={"status_topic": f"st-{unique_name}", "status_dead_letter_topic": f"st-dlq-{unique_name}",
                "evaluate_interval_seconds": 0.5},
        metrics={"port": port},
        api={"port": free_port()},  # never the default port another monitor may hold
    )
    app = MonitorApp(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        stamp = now.isoformat()
        for n in range(12):
            await producer.send(settings.kafka.topic, key=b"ATMBAD01", value=encode(
                event(f"bad-{n}", terminal_id="ATMBAD01", response_code="91", occurred_at=stamp)))
            await producer.send(settings.kafka.topic, key=b"ATMOK001", value=encode(
                event(f"ok-{n}", terminal_id="ATMOK001", response_code="00", occurred_at=stamp)))
        await producer.send(settings.health.status_topic, key=b"ATMOK001", value=msgspec.json.encode({
            "event_id": "st-1", "occurred_at": stamp, "terminal_id": "ATMOK001",
            "component": "network", "state": "offline", "severity": "critical"}))
        await producer.flush()
        url = f"http://127.0.0.1:{port}/metrics"
        await wait_until(lambda: _samples(url, "cardmon_terminal_health_state").get(
            (("terminal_id", "ATMOK001"),)) == 4.0, timeout=40, what="ATMOK001 offline")
        states = _samples(url, "cardmon_terminal_health_state")
        assert states[(("terminal_id", "ATMBAD01"),)] == 2.0
        counts = {labels[0][1]: value for labels, value in _samples(url, "cardmon_terminals").items()}
        assert counts["failing"] == 1 and counts["offline"] == 1
        jobs = _samples(url, "cardmon_scheduler_job_events_total")
        assert jobs[(("event", "executed"), ("job", "health_evaluate"))] >= 1
    finally:
        await producer.stop()
        stop.set()
        await task
