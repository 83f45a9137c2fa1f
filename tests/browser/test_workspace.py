"""The workspace journey in a real browser: sign in from a mailed link, see one's own clients' alerts, act on one.

Real parts: the API with the workspace served over real HTTP on 127.0.0.1, a real SQLite
or PostgreSQL alert store, a real SMTP server (aiosmtpd) receiving the sign-in link, the
system's headless Chromium (Playwright), and axe-core for accessibility.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, expect

from monitor.domain import Manager
from monitor.testing.browser import BrowserTab, accessibility_violations, open_tab
from monitor.testing.fixtures import wait_until
from monitor.testing.smtp import SmtpSink
from tests.browser.served import PUBLIC_URL, RAW_PAN, SECRET, Served, serve_workspace

__all__ = ["CLAIRE", "JONAS", "PUBLIC_URL", "RAW_PAN", "SECRET", "Served"]

CLAIRE = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example")
JONAS = Manager(manager_id="RM-042", name="Jonas Weber", email="jonas.weber@bank.example")
LINK = re.compile(r"http://cardmon\.bank\.example/workspace/sign-in/\S+")


@pytest.fixture
async def served(store_location: Path | str, smtp_sink: SmtpSink) -> AsyncIterator[Served]:
    """The API with the workspace on a free port of 127.0.0.1 over a fresh SQLite, then PostgreSQL, store."""
    async with serve_workspace(store_location, {m.manager_id: m for m in (CLAIRE, JONAS)},
                               smtp_sink=smtp_sink) as served:
        yield served


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
