"""Issue 11's whole journey in a real browser, against a running monitor fed through the real broker.

A manager asks for a sign-in link, receives it on the test SMTP server, opens it, sees
exactly her clients' alerts; a new alert appears without a reload; she acknowledges and
resolves one with an outcome; a second manager cannot open it; their team lead sees
both managers' alerts; the alert's history shows who did what through the workspace.

Real parts: the embedded Kafka-compatible broker (or ``KAFKA_BOOTSTRAP_SERVERS``), a
whole :class:`~monitor.app.MonitorApp` (consumer, alert store, delivery worker, API and
workspace on 127.0.0.1), aiosmtpd, Debian's Chromium through Playwright, axe-core.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from playwright.async_api import Browser, Page, expect
from prometheus_client import CollectorRegistry

from monitor.alerts.store import AlertStore
from monitor.app import MonitorApp
from monitor.testing.browser import BrowserTab, accessibility_violations, open_tab
from monitor.testing.fixtures import monitor_settings, wait_until
from monitor.testing.smtp import SmtpSink
from tests.helpers import encode, event, write_registry

pytestmark = pytest.mark.usefixtures("clean_environment")  # monitor.testing.fixtures

SECRET = "workspace-journey-secret-0123456789"
LINK_SECRET = "journey-link-secret-0123456789"
SIGN_IN_SUBJECT = "Your cardmon sign-in link"
CUSTOMERS = """customer_id,name,tier,manager_id,card_refs
C1,Ada Lovelace,private,M1,tok-ada
C2,Alan Turing,private,M2,tok-alan
C3,Grace Hopper,private,M1,tok-grace"""
MANAGERS = """manager_id,name,email,timezone
M1,Alice Martin,alice@bank.test,Europe/Paris
M2,Bob Keller,bob@bank.test,Europe/Zurich
M3,Lena Hoffmann,lena@bank.test,Europe/Berlin"""


def _sign_in_link(smtp_sink: SmtpSink, to: str, seen: int) -> str:
    """The link of the newest sign-in mail to ``to`` (after the ``seen`` first of them)."""
    mails = [text for recipient, subject, text in smtp_sink.deliveries()
             if recipient == to and subject == SIGN_IN_SUBJECT]
    assert len(mails) > seen, "no new sign-in mail"
    found = re.search(r"http://127\.0\.0\.1:\d+/workspace/sign-in/\S+", mails[-1])
    assert found is not None, mails[-1]
    return found.group(0)


async def _ask_and_sign_in(page: Page, url: str, smtp_sink: SmtpSink, who: str, name: str) -> None:
    """Ask for a link on the sign-in form, open the mailed link, press its button."""
    before = sum(1 for recipient, subject, _ in smtp_sink.deliveries()
                 if recipient == who and subject == SIGN_IN_SUBJECT)
    await page.goto(f"{url}/workspace/sign-in")
    await page.get_by_label("Your manager ID or e-mail address").fill(who)
    await page.get_by_role("button", name="Send me a sign-in link").click()
    await wait_until(lambda: sum(1 for recipient, subject, _ in smtp_sink.deliveries()
                                 if recipient == who and subject == SIGN_IN_SUBJECT) > before,
                     timeout=30, what=f"the sign-in mail to {who}")
    await page.goto(_sign_in_link(smtp_sink, who, before))
    await page.get_by_role("button", name=f"Sign in as {name}").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("My clients' alerts")


@pytest.mark.integration
@pytest.mark.timeout(240)
async def test_issue_11_done_when_in_a_real_browser_against_a_running_monitor(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path, smtp_sink: SmtpSink,
        browser_tab: BrowserTab, chromium: Browser) -> None:
    """From failures on the broker to a resolved alert in the workspace, each role seeing exactly its own."""
    registry = write_registry(tmp_path / "registry", CUSTOMERS, MANAGERS)
    settings = monitor_settings(
        tmp_path, kafka_bootstrap, unique_name, vip_registry=registry,
        # The events carry fixed past times (tests.helpers.event): none is stale here.
        alerting={"stale_after_seconds": None,
                  "smtp": {"host": "127.0.0.1", "port": smtp_sink.port, "from_address": "cardmon@bank.test"}},
        api={"link_secret": LINK_SECRET},
        workspace={"enabled": True, "secret": SECRET, "teams": {"M3": ["M1", "M2"]}},
    )
    monitor = MonitorApp(settings, metrics_registry=CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    url = f"http://127.0.0.1:{settings.api.port}"
    page = browser_tab.page
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        # Card-class failures (expired card): alerted at once, no storm-control wait.
        for number, card in ((1, "tok-ada"), (2, "tok-alan")):
            await producer.send_and_wait(settings.kafka.topic, encode(event(
                f"ev-{number}", card_ref=card, response_code="54")), key=b"ATM00042")
        await wait_until(lambda: len(monitor.store.list_alerts()) == 2, timeout=60, what="two alerts")

        # Alice asks for a link, gets it by mail, signs in: exactly her client's alert.
        await _ask_and_sign_in(page, url, smtp_sink, "alice@bank.test", "Alice Martin")
        rows = page.get_by_role("table").locator("tbody tr")
        await expect(rows).to_have_count(1)
        await expect(rows).to_contain_text(["Ada Lovelace"])
        assert "Alan Turing" not in await page.content()

        # A new failure of her other client appears without a reload, announced.
        await producer.send_and_wait(settings.kafka.topic, encode(event(
            "ev-3", card_ref="tok-grace", response_code="54", occurred_at="2026-03-02T10:17:00+01:00")),
            key=b"ATM00042")
        await expect(rows).to_have_count(2, timeout=30_000)
        await expect(page.get_by_role("status")).to_contain_text("Grace Hopper")
        assert await accessibility_violations(page) == []

        # She acknowledges, then resolves Ada's alert with an outcome and a note.
        await page.get_by_role("link", name="Ada Lovelace").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Alert for Ada Lovelace")
        alert_url = page.url
        await page.get_by_role("button", name="Acknowledge").click()
        await page.get_by_label("Called the client").check()
        await page.get_by_label("Note").fill("She used her other card; new card ordered.")
        await page.get_by_role("button", name="Resolve").click()
        history = page.get_by_role("table").last
        await expect(history).to_contain_text("resolved")
        await expect(history).to_contain_text("Called the client")
        assert await accessibility_violations(page) == []

        async with open_tab(chromium) as bob:  # the second manager, in his own browser context
            await _ask_and_sign_in(bob.page, url, smtp_sink, "bob@bank.test", "Bob Keller")
            await expect(bob.page.get_by_role("table").locator("tbody tr")).to_have_count(1)
            response = await bob.page.goto(alert_url)
            assert response is not None and response.status == 404
            assert "Ada Lovelace" not in await bob.page.content()

        async with open_tab(chromium) as lena:  # their team lead sees both managers' clients
            await _ask_and_sign_in(lena.page, url, smtp_sink, "lena@bank.test", "Lena Hoffmann")
            table = lena.page.get_by_role("table")
            await expect(table.locator("tbody tr")).to_have_count(3)
            for name in ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Alice Martin", "Bob Keller"):
                await expect(table).to_contain_text(name)
            response = await lena.page.goto(alert_url)
            assert response is not None and response.status == 200
            assert await accessibility_violations(lena.page) == []
    finally:
        await producer.stop()
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    assert browser_tab.errors == []

    with AlertStore(tmp_path / "alerts.db") as store:
        ada = next(a for a in store.list_alerts() if a.customer_id == "C1")
        assert [(h.action, h.actor, h.via, h.outcome) for h in store.history(ada.alert_id)
                if h.action in ("acknowledged", "resolved")] == [
            ("acknowledged", "M1", "workspace", None), ("resolved", "M1", "workspace", "called_client")]
