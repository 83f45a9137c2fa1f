"""Live updates of the workspace's alert list in a real browser: new alerts and changes appear without a reload.

Real parts: the API with the workspace served over real HTTP on 127.0.0.1, a real SQLite
or PostgreSQL alert store, the system's headless Chromium (Playwright) running the
page's script against the server-sent event stream, and axe-core for accessibility.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from monitor.testing.browser import BrowserTab, accessibility_violations, open_tab
from tests.browser.served import serve_workspace
from tests.browser.test_workspace import CLAIRE, JONAS, RAW_PAN, Served


@pytest.fixture
async def served(store_location: Path | str) -> AsyncIterator[Served]:
    """The API with the workspace on a free port of 127.0.0.1 over a fresh SQLite, then PostgreSQL, store."""
    async with serve_workspace(store_location, {m.manager_id: m for m in (CLAIRE, JONAS)}) as served:
        yield served


async def _sign_in(page: Page, served: Served, manager_id: str, name: str) -> None:
    """Sign in through a fresh link and land on the alert list."""
    await page.goto(f"{served.url}/workspace/sign-in/{served.tokens.issue(manager_id)}")
    await page.get_by_role("button", name=f"Sign in as {name}").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("My clients' alerts")


@pytest.mark.timeout(180)
async def test_new_alerts_and_acknowledgements_appear_without_a_reload(
        served: Served, browser_tab: BrowserTab, chromium: Browser) -> None:
    """Claire's list shows a new alert and an acknowledgement made elsewhere without a reload; Jonas's shows only his."""
    page = browser_tab.page
    ada = served.alert(1, CLAIRE, "Ada Lovelace")
    await _sign_in(page, served, CLAIRE.manager_id, CLAIRE.name)
    table = page.get_by_role("table")
    rows = table.locator("tbody tr")
    await expect(rows).to_have_count(1)
    await page.evaluate("window.notReloaded = true")

    async with open_tab(chromium) as other:  # Jonas, in his own browser context, no alerts yet
        await _sign_in(other.page, served, JONAS.manager_id, JONAS.name)
        await expect(other.page.get_by_text("None of your clients has an alert.")).to_be_visible()
        await other.page.evaluate("window.notReloaded = true")
        assert await accessibility_violations(other.page) == []

        served.alert(2, CLAIRE, "Grace Hopper")
        served.alert(3, JONAS, "Alan Turing")
        await expect(page.get_by_role("link", name="Grace Hopper")).to_be_visible()
        await expect(page.get_by_role("status")).to_have_text("New alert: Grace Hopper (high)")
        await expect(rows).to_have_count(2)
        await expect(other.page.get_by_role("link", name="Alan Turing")).to_be_visible()
        await expect(other.page.get_by_text("None of your clients has an alert.")).to_be_hidden()
        await expect(other.page.get_by_role("table").locator("tbody tr")).to_have_count(1)
        assert "Grace Hopper" not in await other.page.content()
        assert "Ada Lovelace" not in await other.page.content()
        assert await other.page.evaluate("window.notReloaded") is True
        assert await accessibility_violations(other.page) == []
        assert other.errors == []

    # Acknowledged elsewhere (the link in her mail): the row changes and moves below the open one.
    await asyncio.to_thread(served.store.acknowledge, ada, by=CLAIRE.manager_id, via="link")
    ada_row = rows.filter(has=page.get_by_role("link", name="Ada Lovelace"))
    await expect(ada_row).to_contain_text("acknowledged")
    await expect(ada_row).to_have_class("done")
    await expect(rows.first).to_contain_text("Grace Hopper")
    assert await page.evaluate("window.notReloaded") is True
    assert RAW_PAN not in await page.content()
    assert await accessibility_violations(page) == []
    assert browser_tab.errors == []  # no script error, no policy violation

    await page.get_by_role("link", name="Ada Lovelace").click()  # a live row's link works
    await expect(page.get_by_role("heading", level=1)).to_have_text("Alert for Ada Lovelace")


@pytest.mark.timeout(120)
async def test_without_scripts_the_list_still_works_by_reloading(served: Served, chromium: Browser) -> None:
    """With JavaScript off the list shows its rows and says to reload, and a reload shows a new alert."""
    context = await chromium.new_context(java_script_enabled=False)
    try:
        page = await context.new_page()
        served.alert(1, CLAIRE, "Ada Lovelace")
        await _sign_in(page, served, CLAIRE.manager_id, CLAIRE.name)
        # (Playwright turns script execution off, not the parser's scripting flag, so a
        # <noscript> stays unrendered here: its text is checked in the page's source.)
        assert "<noscript><p>Reload the page to see new alerts.</p></noscript>" in await page.content()
        await expect(page.get_by_role("link", name="Ada Lovelace")).to_be_visible()
        served.alert(2, CLAIRE, "Grace Hopper")
        await page.reload()
        await expect(page.get_by_role("table").locator("tbody tr")).to_have_count(2)
        await expect(page.get_by_role("link", name="Grace Hopper")).to_be_visible()
    finally:
        await context.close()
