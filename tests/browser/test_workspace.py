"""The workspace journey in a real browser: sign in from a mailed link, see one's own clients' alerts, act on one.

Real parts: the API with the workspace served over real HTTP on 127.0.0.1, a real SQLite
or PostgreSQL alert store, a real SMTP server (aiosmtpd) receiving the sign-in link, the
system's headless Chromium (Playwright), and axe-core for accessibility.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, expect

from monitor.alerts.delivery.channels import EmailChannel
from monitor.alerts.store import AlertStore
from monitor.api import build_api, start_api
from monitor.domain import AlertEvent, Manager, VipFailure
from monitor.testing.browser import BrowserTab, accessibility_violations, open_tab
from monitor.testing.fixtures import wait_until
from monitor.testing.smtp import SmtpSink
from monitor.workspace import Sessions, SignInMailer, SignInTokens, Workspace

SECRET = "workspace-secret-for-browser-tests-0123"
PUBLIC_URL = "http://cardmon.bank.example"
CLAIRE = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example")
JONAS = Manager(manager_id="RM-042", name="Jonas Weber", email="jonas.weber@bank.example")
RAW_PAN = "4111111111111111"
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
LINK = re.compile(r"http://cardmon\.bank\.example/workspace/sign-in/\S+")


@dataclass
class Served:
    """The workspace under test: its base URL, its store and its sign-in tokens."""

    url: str
    store: AlertStore
    tokens: SignInTokens

    def alert(self, number: int, manager: Manager, name: str) -> str:
        """Record one failure of ``manager``'s client ``number`` called ``name``; return the alert ID."""
        event = AlertEvent(
            event_id=f"ev-{number}", occurred_at=T0 + timedelta(minutes=number), channel="ATM",
            terminal_id="ATM00042", merchant_id="BNKPARIS0001", txn_type="withdrawal",
            amount_minor=13409, currency="EUR", response_code="91", outcome="technical",
            response_meaning="Issuer or switch is inoperative", pan_masked=RAW_PAN, card_ref=RAW_PAN)
        failure = VipFailure(event=event, customer_id=f"C-{number:04d}", customer_name=name,
                             tier="private", manager=manager, severity="high",
                             suggested_action="Call the client to apologise.")
        [alert_id] = self.store.record([failure], now=T0).new_alert_ids
        return alert_id


@pytest.fixture
async def served(store_location: Path | str, smtp_sink: SmtpSink) -> AsyncIterator[Served]:
    """The API with the workspace on a free port of 127.0.0.1 over a fresh SQLite, then PostgreSQL, store."""
    managers = {m.manager_id: m for m in (CLAIRE, JONAS)}
    with AlertStore(store_location) as store:
        tokens = SignInTokens(SECRET, max_age_seconds=900)
        workspace = Workspace(
            store=store, tokens=tokens, sessions=Sessions(store, SECRET, max_age_seconds=3600),
            mailer=SignInMailer(tokens, PUBLIC_URL, managers=lambda: managers,
                                email=EmailChannel(smtp_sink.host, smtp_sink.port,
                                                   sender="cardmon@bank.example")))
        server = await start_api(build_api(store, workspace=workspace))
        try:
            yield Served(server.url, store, tokens)
        finally:
            await server.close()


async def _sign_in(page: Page, served: Served, link: str, name: str) -> None:
    """Open a sign-in link (pointed at the test server) and press its button."""
    await page.goto(f"{served.url}{urlsplit(link).path}")
    await page.get_by_role("button", name=f"Sign in as {name}").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("My clients' alerts")


@pytest.mark.timeout(180)
async def test_a_manager_signs_in_and_resolves_her_clients_alert_in_a_real_browser(
        served: Served, smtp_sink: SmtpSink, browser_tab: BrowserTab, chromium: Browser) -> None:
    """Claire asks for a link, signs in from her mail, sees only her clients, acknowledges and resolves one; Jonas gets 404 on it."""
    page = browser_tab.page
    ada = served.alert(1, CLAIRE, "Ada Lovelace")
    served.alert(2, CLAIRE, "Grace Hopper")
    served.alert(3, JONAS, "Alan Turing")

    await page.goto(f"{served.url}/workspace/sign-in")
    await page.get_by_label("Your manager ID or e-mail address").fill("claire.martin@bank.example")
    await page.get_by_role("button", name="Send me a sign-in link").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Check your messages")
    await wait_until(lambda: bool(smtp_sink.deliveries()), timeout=30, what="the sign-in mail")
    [(to, _, text)] = smtp_sink.deliveries()
    assert to == CLAIRE.email
    found = LINK.search(text)
    assert found is not None, text
    await _sign_in(page, served, found.group(0), CLAIRE.name)

    rows = page.get_by_role("table").locator("tbody tr")
    await expect(rows).to_have_count(2)
    await expect(page.get_by_role("table")).to_contain_text("Ada Lovelace")
    await expect(page.get_by_role("table")).to_contain_text("Grace Hopper")
    assert "Alan Turing" not in await page.content()
    assert await accessibility_violations(page) == []

    await page.get_by_role("link", name="Ada Lovelace").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Alert for Ada Lovelace")
    assert await accessibility_violations(page) == []
    assert RAW_PAN not in await page.content()
    await page.get_by_label("Note (optional)").fill("Calling her now")
    await page.get_by_role("button", name="Acknowledge").click()
    history = page.get_by_role("table").last
    await expect(history).to_contain_text("Calling her now")
    await expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    assert await accessibility_violations(page) == []  # the resolve form (radio group) too

    await page.get_by_label("Called the client").check()
    await page.get_by_label("Note", exact=True).fill("She will retry tomorrow")
    await page.get_by_role("button", name="Resolve").click()
    await expect(history).to_contain_text("Called the client")
    await expect(history).to_contain_text("She will retry tomorrow")
    await expect(page.get_by_role("button", name="Resolve")).to_have_count(0)
    assert served.store.state_of(ada) == "resolved"
    assert [(h.action, h.actor, h.via) for h in served.store.history(ada) if h.via == "workspace"] == [
        ("acknowledged", "RM-017", "workspace"), ("resolved", "RM-017", "workspace")]
    resolved = served.store.history(ada)[-1]
    assert (resolved.outcome, resolved.note) == ("called_client", "She will retry tomorrow")
    assert browser_tab.errors == []

    async with open_tab(chromium) as second:  # Jonas, in his own browser context
        link = f"{PUBLIC_URL}/workspace/sign-in/{served.tokens.issue(JONAS.manager_id)}"
        await _sign_in(second.page, served, link, JONAS.name)
        response = await second.page.goto(f"{served.url}/workspace/alerts/{ada}")
        assert response is not None and response.status == 404
        await expect(second.page.get_by_role("heading", level=1)).to_have_text("Not found")
        assert "Ada Lovelace" not in await second.page.content()


@pytest.mark.timeout(120)
async def test_the_pages_fit_a_phone_screen(served: Served, chromium: Browser) -> None:
    """At a phone's width (390 px) the list, an alert and a client page need no sideways scrolling."""
    ada = served.alert(1, CLAIRE, "Ada Lovelace")
    async with open_tab(chromium) as tab:
        page = tab.page
        await page.set_viewport_size({"width": 390, "height": 844})
        link = f"{PUBLIC_URL}/workspace/sign-in/{served.tokens.issue(CLAIRE.manager_id)}"
        await _sign_in(page, served, link, CLAIRE.name)
        for path in ("/workspace/alerts", f"/workspace/alerts/{ada}", "/workspace/clients/C-0001"):
            response = await page.goto(f"{served.url}{path}")
            assert response is not None and response.status == 200, path
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, (path, overflow)
        assert tab.errors == []
