"""The recovery follow-up end to end, from the broker to SMTP, to opted-in managers only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from monitor.app import MonitorApp
from monitor.testing.fixtures import monitor_settings, wait_until
from monitor.testing.smtp import SmtpSink
from tests.helpers import encode, event, write_registry


@pytest.mark.integration
@pytest.mark.timeout(90)
async def test_a_client_who_retries_elsewhere_gets_their_opted_in_manager_one_follow_up(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """Two clients withdraw elsewhere 4 min after failing: Alice (opted in) is told, Bruno not."""
    registry = write_registry(
        tmp_path / "registry",
        "customer_id,name,tier,manager_id,card_refs\nC1,Ada Lovelace,private,M1,tok-ada\n"
        "C2,Blaise Pascal,private,M2,tok-blaise",
        "manager_id,name,email,timezone,recovery_follow_up\n"
        "M1,Alice Martin,alice@bank.test,Europe/Paris,yes\n"
        "M2,Bruno Costa,bruno@bank.test,Europe/Lisbon,no")
    settings = monitor_settings(
        tmp_path, kafka_bootstrap, unique_name, vip_registry=registry,
        alerting={"backoff_initial_seconds": 0.1, "backoff_max_seconds": 0.3,
                  "stale_after_seconds": None,
                  "smtp": {"host": "127.0.0.1", "port": smtp_sink.port,
                           "from_address": "cardmon@bank.test"}})
    monitor = MonitorApp(settings, metrics_registry=CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            # Fraud declines (high, not an outage class), then approved withdrawals elsewhere.
            for value in (event("ev-ada", card_ref="tok-ada", response_code="59"),
                          event("ev-blaise", card_ref="tok-blaise", response_code="59",
                                terminal_id="ATM00043"),
                          event("ok-ada", card_ref="tok-ada", terminal_id="ATM00077",
                                occurred_at="2026-03-02T10:19:00+01:00"),
                          event("ok-blaise", card_ref="tok-blaise", terminal_id="ATM00078",
                                occurred_at="2026-03-02T10:19:00+01:00")):
                await producer.send_and_wait(settings.kafka.topic, encode(value),
                                             key=value["terminal_id"].encode())
        finally:
            await producer.stop()

        def follow_ups() -> dict[str, int]:
            with monitor.store._transaction() as conn:
                return {row[0]: int(row[1]) for row in conn.execute(
                    "SELECT customer_id, follow_up FROM alert_recoveries").fetchall()}

        await wait_until(lambda: follow_ups() == {"C1": 1, "C2": 2}, timeout=45,
                         what="Ada's follow-up queued, Blaise's not sent")
        await wait_until(lambda: len(smtp_sink.messages()) >= 3, timeout=30,
                         what="two alerts and one follow-up by e-mail")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    subjects = sorted((recipients[0], message["Subject"])
                      for recipients, message in smtp_sink.messages())
    follow_up = [s for s in subjects if "RECOVERED" in s[1]]
    assert follow_up == [("alice@bank.test",
                          "[RECOVERED] Ada Lovelace completed the cash withdrawal")]
    assert len(subjects) == 3 and not any("Blaise" in s for r, s in subjects if "RECOVERED" in s)
    [body] = [m.get_content() for _, m in smtp_sink.messages() if "RECOVERED" in m["Subject"]]
    assert ("Ada Lovelace completed the cash withdrawal at ATM00077 (another terminal), 4 minutes "
            "after the failure at ATM00042 (Lyon).") in body.replace("\r\n", "\n")
    assert "Completed at 10:19 CET." in body
