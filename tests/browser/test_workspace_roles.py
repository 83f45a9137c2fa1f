"""Roles in a real browser: a team lead sees both managers' clients' alerts and the team page; operations see no client.

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
from monitor.workspace.roles import RoleBook

SECRET = "workspace-secret-for-browser-tests-0123"
PUBLIC_URL = "http://cardmon.bank.example"
CLAIRE = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example")
JONAS = Manager(manager_id="RM-042", name="Jonas Weber", email="jonas.weber@bank.example")
LENA = Manager(manager_id="RM-001", name="Lena Hoffmann", email="lena.hoffmann@bank.example")
OPS_ID = "OPS-7"
LINK = re.compile(r"http://cardmon\.bank\.example/workspace/sign-in/\S+")


@dataclass
class Served:
    """The workspace under test: its base URL, its store and its sign-in tokens."""

    url: str
    store: AlertStore
    tokens: SignInTokens

    def alert(self, number: int, manager: Manager, name: str, minutes_ago: int) -> str:
        """Record one failure of ``manager``'s client ``number`` called ``name``; return the alert ID."""
        at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
        event = AlertEvent(
            event_id=f"ev-{number}", occurred_at=at, channel="ATM", terminal_id="ATM00042",
            merchant_id="BNKPARIS0001", txn_type="withdrawal", amount_minor=13409, currency="EUR",
            response_code="91", outcome="technical", response_meaning="Issuer or switch is inoperative",
            pan_masked="411111******1111")
        failure = VipFailure(event=event, customer_id=f"C-{number:04d}", customer_name=name,
                             tier="private", manager=manager, severity="high",
                             suggested_action="Call the client to apologise.")
        [alert_id] = self.store.record([failure], now=at).new_alert_ids
        return alert_id


@pytest.fixture
async def served(store_location: Path | str, smtp_sink: SmtpSink) -> AsyncIterator[Served]:
    """The workspace with Lena leading Claire and Jonas, and Priya in operations, on a free port of 127.0.0.1."""
    managers = {m.manager_id: m for m in (CLAIRE, JONAS, LENA)}
    roles = RoleBook(teams={LENA.manager_id: frozenset({CLAIRE.manager_id, JONAS.manager_id})},
                     operations={OPS_ID: ("Priya Nair", "priya.nair@bank.example")})
    with AlertStore(store_location) as store:
        tokens = SignInTokens(SECRET, max_age_seconds=900)
        workspace = Workspace(
            store=store, tokens=tokens, sessions=Sessions(store, SECRET, max_age_seconds=3600),
            mailer=SignInMailer(tokens, PUBLIC_URL, managers=lambda: managers, roles=roles,
                                email=EmailChannel(smtp_sink.host, smtp_sink.port,
                                                   sender="cardmon@bank.example")))
        server = await start_api(build_api(store, workspace=workspace))
        try:
            yield Served(server.url, store, tokens)
        finally:
            await server.close()


async def _sign_in(page: Page, served: Served, link: str, name: str, heading: str) -> None:
    """Open a sign-in link (pointed at the test server), press its button, land on ``heading``."""
    await page.goto(f"{served.url}{urlsplit(link).path}")
    await page.get_by_role("button", name=f"Sign in as {name}").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(heading)


@pytest.mark.timeout(180)
async def test_a_team_lead_sees_both_managers_alerts_and_the_team_page_in_a_real_browser(
        served: Served, smtp_sink: SmtpSink, browser_tab: BrowserTab, chromium: Browser) -> None:
    """Lena signs in from her mail, sees Claire's and Jonas's clients' alerts with their managers, then her team page."""
    page = browser_tab.page
    ada = served.alert(1, CLAIRE, "Ada Lovelace", minutes_ago=45)
    served.alert(2, JONAS, "Alan Turing", minutes_ago=20)

    await page.goto(f"{served.url}/workspace/sign-in")
    await page.get_by_label("Your manager ID or e-mail address").fill(LENA.email or "")
    await page.get_by_role("button", name="Send me a sign-in link").click()
    await wait_until(lambda: bool(smtp_sink.deliveries()), timeout=30, what="the sign-in mail")
    [(to, _, text)] = smtp_sink.deliveries()
    assert to == LENA.email
    found = LINK.search(text)
    assert found is not None, text
    await _sign_in(page, served, found.group(0), LENA.name, "My clients' alerts")

    table = page.get_by_role("table")
    await expect(table.locator("tbody tr")).to_have_count(2)
    await expect(table).to_contain_text("Ada Lovelace")
    await expect(table).to_contain_text("Claire Martin")
    await expect(table).to_contain_text("Alan Turing")
    await expect(table).to_contain_text("Jonas Weber")
    assert await accessibility_violations(page) == []

    await page.get_by_role("navigation").get_by_role("link", name="My team").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("My team")
    team = page.get_by_role("table")
    await expect(team.locator("tbody tr")).to_have_count(3)
    claire_row = team.locator("tbody tr", has_text="Claire Martin")
    await expect(claire_row.locator("td").first).to_have_text("1")
    await expect(claire_row.locator("td").nth(1)).to_have_text(re.compile(r"^4[56] min$"))
    assert await accessibility_violations(page) == []

    await claire_row.get_by_role("link", name="Claire Martin").click()
    await expect(page.get_by_role("table").locator("tbody tr")).to_have_count(1)
    await page.get_by_role("link", name="Ada Lovelace").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Alert for Ada Lovelace")
    await page.get_by_role("button", name="Acknowledge").click()
    await expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    assert [(h.actor, h.via) for h in served.store.history(ada) if h.action == "acknowledged"] == [
        (LENA.manager_id, "workspace")]
    assert browser_tab.errors == []

    async with open_tab(chromium) as second:  # operations, in their own browser context
        link = f"{PUBLIC_URL}/workspace/sign-in/{served.tokens.issue(OPS_ID)}"
        await _sign_in(second.page, served, link, "Priya Nair", "Incidents")
        nav = second.page.get_by_role("navigation")
        await expect(nav.get_by_role("link")).to_have_text(["Incidents", "Terminals"])
        await nav.get_by_role("link", name="Terminals").click()
        await expect(second.page.get_by_role("table")).to_contain_text("ATM00042")
        assert "Ada Lovelace" not in await second.page.content()
        assert await accessibility_violations(second.page) == []
        response = await second.page.goto(f"{served.url}/workspace/alerts/{ada}")
        assert response is not None and response.status == 404
