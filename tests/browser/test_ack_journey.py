"""From a card failure on the broker to an acknowledgement in a real browser, through a running monitor."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from playwright.async_api import expect
from prometheus_client import CollectorRegistry

from monitor.alerts.store import AlertStore
from monitor.app import MonitorApp
from monitor.testing.browser import BrowserTab
from monitor.testing.fixtures import monitor_settings, wait_until
from monitor.testing.smtp import SmtpSink
from tests.helpers import encode, event, write_registry

pytestmark = pytest.mark.usefixtures("clean_environment")  # monitor.testing.fixtures

LINK_SECRET = "journey-link-secret-0123456789"
ACK_LINE = re.compile(r"^Acknowledge: (\S+)", re.MULTILINE)


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_a_manager_acknowledges_from_the_link_in_her_email_in_a_real_browser(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path, smtp_sink: SmtpSink,
        browser_tab: BrowserTab) -> None:
    """A failure sent through the broker reaches the manager by e-mail; its link, opened in Chromium, acknowledges as her."""
    registry = write_registry(
        tmp_path / "registry", "customer_id,name,tier,manager_id,card_refs\nC1,Ada Lovelace,private,M1,tok-ada",
        "manager_id,name,email,timezone\nM1,Alice Martin,alice@bank.test,Europe/Paris")
    settings = monitor_settings(
        tmp_path, kafka_bootstrap, unique_name, vip_registry=registry,
        # The events carry fixed past times (tests.helpers.event): none is stale here.
        alerting={"stale_after_seconds": None,
                  "smtp": {"host": "127.0.0.1", "port": smtp_sink.port, "from_address": "cardmon@bank.test"}},
        api={"link_secret": LINK_SECRET},
    )
    monitor = MonitorApp(settings, metrics_registry=CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    page = browser_tab.page
    try:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:  # a card-class failure (expired card): no storm-control wait
            failure = event("ev-ada", card_ref="tok-ada", response_code="54")
            await producer.send_and_wait(settings.kafka.topic, encode(failure), key=b"ATM00042")
        finally:
            await producer.stop()
        await wait_until(lambda: bool(smtp_sink.deliveries()), timeout=45, what="the e-mail to Alice")
        [(to, _, text)] = smtp_sink.deliveries()
        assert to == "alice@bank.test"
        found = ACK_LINE.search(text)
        assert found is not None, text
        link = found.group(1)
        assert link.startswith(f"http://127.0.0.1:{settings.api.port}/alerts/")

        await page.goto(link)
        await expect(page.get_by_role("heading", level=1)).to_have_text("Acknowledge this alert?")
        await expect(page.locator("body")).to_contain_text("Ada Lovelace (private)")
        await page.get_by_role("button", name="Acknowledge as M1").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Acknowledged")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    assert browser_tab.errors == []
    with AlertStore(tmp_path / "alerts.db") as store:
        [alert] = store.list_alerts()
        assert link.split("/alerts/")[1].startswith(f"{alert.alert_id}/ack?token=")
        assert store.state_of(alert.alert_id) == "acknowledged"
        entry = store.history(alert.alert_id)[-1]
        assert (entry.action, entry.actor, entry.via) == ("acknowledged", "M1", "link")
