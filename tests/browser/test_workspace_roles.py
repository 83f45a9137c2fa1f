"""Roles in a real browser: a team lead sees both managers' clients' alerts and the team page; operations see no client.

Real parts: the API with the workspace served over real HTTP on 127.0.0.1, a real SQLite
or PostgreSQL alert store, a real SMTP server (aiosmtpd) receiving the sign-in link, the
system's headless Chromium (Playwright), and axe-core for accessibility.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, expect

from monitor.domain import Manager
from monitor.testing.browser import BrowserTab, accessibility_violations, open_tab
from monitor.testing.fixtures import wait_until
from monitor.testing.smtp import SmtpSink
from monitor.workspace.roles import RoleBook
from tests.browser.served import PUBLIC_URL, Served, serve_workspace

CLAIRE = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example")
JONAS = Manager(manager_id="RM-042", name="Jonas Weber", email="jonas.weber@bank.example")
LENA = Manager(manager_id="RM-001", name="Lena Hoffmann", email="lena.hoffmann@bank.example")
OPS_ID = "OPS-7"
LINK = re.compile(r"http://cardmon\.bank\.example/workspace/sign-in/\S+")


@pytest.fixture
async def served(store_location: Path | str, smtp_sink: SmtpSink) -> AsyncIterator[Served]:
    """The workspace with Lena leading Claire and Jonas, and Priya in operations, on a free port of 127.0.0.1."""
    roles = RoleBook(teams={LENA.manager_id: frozenset({CLAIRE.manager_id, JONAS.manager_id})},
                     operations={OPS_ID: ("Priya Nair", "priya.nair@bank.example")})
    async with serve_workspace(store_location, {m.manager_id: m for m in (CLAIRE, JONAS, LENA)},
                               smtp_sink=smtp_sink, roles=roles) as served:
        yield served


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
    ada = served.alert(1, CLAIRE, "Ada Lovelace", at=datetime.now(UTC) - timedelta(minutes=45),
                       pan_masked="411111******1111", card_ref=None)
    served.alert(2, JONAS, "Alan Turing", at=datetime.now(UTC) - timedelta(minutes=20),
                 pan_masked="411111******1111", card_ref=None)

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
