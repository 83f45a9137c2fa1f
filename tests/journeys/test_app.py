"""MonitorApp wiring: channels from settings, and the whole service on the real broker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from monitor.alerts.delivery.channels import (
    ConsoleChannel,
    EmailChannel,
    JsonLinesChannel,
    WebhookChannel,
)
from monitor.alerts.delivery.configured import build_channels
from monitor.app import MonitorApp
from monitor.config import Settings
from monitor.testing.broker import free_port
from monitor.testing.fixtures import monitor_settings, wait_until
from tests.helpers import encode, event, write_registry

MANAGERS = """
manager_id,name,email,timezone
M1,Alice Martin,,Europe/Paris
"""
CUSTOMERS = """
customer_id,name,tier,manager_id,card_refs
C-001,Ada Lovelace,private,M1,tok_ada
C-002,Blaise Pascal,gold,M1,tok_blaise
"""


pytestmark = pytest.mark.usefixtures("clean_environment")  # monitor.testing.fixtures


def test_channels_follow_the_settings(tmp_path: Path) -> None:
    """Webhook and Apprise are always available; e-mail needs an SMTP host; sinks only when listed."""
    bare = build_channels(Settings())
    assert set(bare) == {"webhook", "apprise"}
    assert isinstance(bare["webhook"], WebhookChannel)
    full = build_channels(Settings(alerting={
        "smtp": {"host": "mail.bank.internal", "password": "s3cret"},
        "sinks": ["console", "jsonl", "alertmanager"], "jsonl_path": tmp_path / "alerts.jsonl",
        "alertmanager_url": "http://127.0.0.1:9093", "webhook_signing_secret": "hmac-key",
    }))
    assert set(full) == {"webhook", "apprise", "email", "console", "jsonl", "alertmanager"}
    assert isinstance(full["email"], EmailChannel)
    assert isinstance(full["console"], ConsoleChannel)
    assert isinstance(full["jsonl"], JsonLinesChannel)
    assert "s3cret" not in repr(full) and "hmac-key" not in repr(full)


def _metric(body: str, name: str) -> float | None:
    """The value of an unlabelled sample in a text exposition, ``None`` when absent."""
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


@pytest.mark.integration
@pytest.mark.timeout(90)
async def test_service_alerts_and_reloads_its_registry(kafka_bootstrap: str, unique_name: str,
                                                       tmp_path: Path) -> None:
    """The running service turns a VIP failure into a stored, delivered alert and picks up a registry rewrite by itself."""
    customers, managers = write_registry(tmp_path / "registry", CUSTOMERS, MANAGERS)
    metrics_port = free_port()
    jsonl = tmp_path / "alerts.jsonl"
    settings = monitor_settings(
        tmp_path, kafka_bootstrap, unique_name, vip_registry=(customers, managers),
        registry={"reload_interval_seconds": 0.2},
        alerting={"sinks": ["jsonl"], "jsonl_path": jsonl},
        metrics={"port": metrics_port},
    )
    monitor = MonitorApp(settings, metrics_registry=CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        async with httpx.AsyncClient() as http:
            async def scrape() -> str:
                try:
                    return (await http.get(url, timeout=2)).text
                except httpx.TransportError:
                    return ""

            body = ""

            async def registry_size(expected: float) -> None:
                nonlocal body
                deadline = asyncio.get_running_loop().time() + 20
                while _metric(body, "cardmon_registry_customers") != expected:
                    assert asyncio.get_running_loop().time() < deadline, body[-2000:]
                    await asyncio.sleep(0.1)
                    body = await scrape()

            await registry_size(2)
            await producer.start()
            for value in (event("e1", customer_id="C-001", response_code="91"),
                          event("e2", customer_id="C-404", response_code="91"),  # not a VIP
                          event("e3", card_ref="tok_blaise", response_code="51")):  # gold: funds do not alert
                await producer.send_and_wait(settings.kafka.topic, encode(value), key=b"ATM00042")
            await wait_until(lambda: jsonl.is_file() and jsonl.read_text().count("\n") >= 1,
                             timeout=30, what="the first alert in the jsonl sink")

            # A new client appears in the registry file: the scheduled reload picks it up.
            customers.write_text(CUSTOMERS.strip() + "\nC-003,Carl Gauss,platinum,M1,tok_carl\n",
                                 encoding="utf-8")
            await registry_size(3)
            await producer.send_and_wait(settings.kafka.topic,
                                         encode(event("e4", card_ref="tok_carl", response_code="96")),
                                         key=b"ATM00042")
            await wait_until(lambda: jsonl.read_text().count("\n") >= 2, timeout=30,
                             what="the new client's alert in the jsonl sink")
    finally:
        await producer.stop()
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    assert monitor.store_summary == 2
    delivered = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    text = json.dumps(delivered)
    assert "Ada Lovelace" in text and "Carl Gauss" in text
    assert "Blaise Pascal" not in text


@pytest.mark.integration
@pytest.mark.timeout(90)
async def test_managers_no_channel_reaches_are_named_at_start_and_after_a_reload(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Without an SMTP relay, the running monitor names (by ID, no address) the e-mail-only manager at start, counts them, and again after a registry reload."""
    customers, managers = write_registry(
        tmp_path / "registry", CUSTOMERS,
        "manager_id,name,email,webhook_url,timezone\n"
        "M1,Alice Martin,alice.martin@bank.example,,Europe/Paris\n"
        "M2,Bo Chen,,https://hooks.bank.example/bo,Asia/Singapore")
    settings = monitor_settings(
        tmp_path, kafka_bootstrap, unique_name, vip_registry=(customers, managers),
        registry={"reload_interval_seconds": 0.2},
        api={"enabled": False},
    )
    monitor = MonitorApp(settings, metrics_registry=CollectorRegistry())
    stop = asyncio.Event()
    caplog.set_level("WARNING", logger="monitor.app")

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if "cannot be reached" in r.getMessage()]

    def unreachable() -> float | None:
        return monitor.metrics_registry.get_sample_value("cardmon_managers_unreachable")

    task = asyncio.create_task(monitor.run(stop))
    try:
        await wait_until(lambda: len(warnings()) == 1, timeout=30, what="the start-up warning")
        assert "M1 (high, medium, low)" in warnings()[0] and "M2" not in warnings()[0]
        assert "alice.martin" not in caplog.text
        assert unreachable() == 1
        managers.write_text("manager_id,name,email,webhook_url,timezone\n"
                            "M1,Alice Martin,alice.martin@bank.example,,Europe/Paris\n"
                            "M2,Bo Chen,bo.chen@bank.example,,Asia/Singapore\n", encoding="utf-8")
        await wait_until(lambda: len(warnings()) == 2, timeout=30, what="the warning after the reload")
        assert "M1 (high, medium, low); M2 (high, medium, low)" in warnings()[1]
        assert unreachable() == 2
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
