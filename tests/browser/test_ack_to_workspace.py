"""From a notification's acknowledgement link to the alert in the workspace, in a real browser.

Real parts: the API with acknowledgement links and the workspace served over real HTTP
on 127.0.0.1, a real SQLite or PostgreSQL alert store, a real SMTP server receiving the
sign-in link, the system's headless Chromium (Playwright), and axe-core.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import expect

from monitor.alerts.delivery.links import AckLinks
from monitor.testing.browser import BrowserTab, accessibility_violations
from monitor.testing.fixtures import wait_until
from monitor.testing.smtp import SmtpSink
from tests.browser.served import PUBLIC_URL, SECRET, serve_workspace
from tests.browser.test_workspace import CLAIRE, JONAS, RAW_PAN, Served

LINK = re.compile(r"http://cardmon\.bank\.example/workspace/sign-in/\S+")


@dataclass
class ServedWithLinks:
    """The workspace under test with acknowledgement links."""

    served: Served
    links: AckLinks

    def ack_link(self, alert_id: str, manager_id: str) -> str:
        """The link a notification carries, pointed at the test server."""
        parts = urlsplit(self.links.url(alert_id, manager_id))
        return f"{self.served.url}{parts.path}?{parts.query}"


@pytest.fixture
async def served(store_location: Path | str, smtp_sink: SmtpSink) -> AsyncIterator[ServedWithLinks]:
    """The API with links and the workspace on 127.0.0.1 over a fresh SQLite, then PostgreSQL, store."""
    links = AckLinks(SECRET, PUBLIC_URL)
    async with serve_workspace(store_location, {m.manager_id: m for m in (CLAIRE, JONAS)},
                               smtp_sink=smtp_sink, links=links) as served:
        yield ServedWithLinks(served, links)


@pytest.mark.timeout(180)
async def test_the_acknowledgement_link_leads_to_the_alert_in_the_workspace(
        served: ServedWithLinks, smtp_sink: SmtpSink, browser_tab: BrowserTab) -> None:
    """Claire acknowledges in one click from her mail, opens the alert in her workspace, signs in from the mailed link and lands on it."""
    page = browser_tab.page
    ada = served.served.alert(1, CLAIRE, "Ada Lovelace")
    await page.goto(served.ack_link(ada, CLAIRE.manager_id))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Acknowledge this alert?")
    await page.get_by_role("button", name="Acknowledge as RM-017").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Acknowledged")
    assert served.served.store.state_of(ada) == "acknowledged"
    assert await accessibility_violations(page) == []

    await page.get_by_role("link", name="Open in your workspace").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    await page.get_by_label("Your manager ID or e-mail address").fill(CLAIRE.manager_id)
    await page.get_by_role("button", name="Send me a sign-in link").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Check your messages")
    await wait_until(lambda: bool(smtp_sink.deliveries()), timeout=30, what="the sign-in mail")
    [(to, _, text)] = smtp_sink.deliveries()
    found = LINK.search(text)
    assert to == CLAIRE.email and found is not None, text
    mailed = urlsplit(found.group(0))
    await page.goto(f"{served.served.url}{mailed.path}?{mailed.query}")
    await page.get_by_role("button", name=f"Sign in as {CLAIRE.name}").click()

    await expect(page.get_by_role("heading", level=1)).to_have_text("Alert for Ada Lovelace")
    assert urlsplit(page.url).path == f"/workspace/alerts/{ada}"
    await expect(page.get_by_role("table").last).to_contain_text("link")  # acknowledged via the link
    assert RAW_PAN not in await page.content()
    assert await accessibility_violations(page) == []
    assert browser_tab.errors == []
