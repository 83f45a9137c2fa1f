"""The recovery watch in a real browser: list badges and the alert page's recovery, accessible."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.async_api import expect

from monitor.alerts.store import RecoveryMatch
from monitor.domain import Manager
from monitor.testing.browser import BrowserTab, accessibility_violations
from monitor.testing.smtp import SmtpSink
from tests.alerts.conftest import _make_failure
from tests.browser.served import PUBLIC_URL, T0, Served, serve_workspace

CLAIRE = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example")


@pytest.fixture
async def served(store_location: Path | str, smtp_sink: SmtpSink) -> AsyncIterator[Served]:
    """The workspace on a free port of 127.0.0.1 over a fresh SQLite, then PostgreSQL, store."""
    async with serve_workspace(store_location, {CLAIRE.manager_id: CLAIRE},
                               smtp_sink=smtp_sink) as served:
        yield served


def watched(served: Served, number: int, name: str) -> str:
    """Record a failed withdrawal of Claire's client ``number`` at ATM00042, watched 30 min."""
    failure = _make_failure(f"ev-{number}", T0, customer_id=f"C-{number:04d}",
                            customer_name=name, manager=CLAIRE)
    [alert_id] = served.store.record([failure], now=T0,
                                     recovery_window_seconds=1800).new_alert_ids
    return alert_id


@pytest.mark.timeout(120)
async def test_badges_and_the_recovery_section_show_and_pass_axe(
        served: Served, browser_tab: BrowserTab) -> None:
    """Ada recovered at another ATM, Grace gave up: the list badges both, Ada's page says where."""
    page = browser_tab.page
    ada, grace = watched(served, 1, "Ada Lovelace"), watched(served, 2, "Grace Hopper")
    served.store.mark_recovered([RecoveryMatch(alert_id=ada, recovered_at=T0 + timedelta(minutes=4),
                                               event_id="ok-1", terminal_id="ATM-0042")],
                                now=T0 + timedelta(minutes=4))
    later = T0 + timedelta(minutes=31)
    served.store.abandon_watches(later, now=later)
    link = f"{PUBLIC_URL}/workspace/sign-in/{served.tokens.issue(CLAIRE.manager_id)}"
    await page.goto(link.replace(PUBLIC_URL, served.url))
    await page.get_by_role("button", name=f"Sign in as {CLAIRE.name}").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("My clients' alerts")
    rows = page.get_by_role("table").locator("tbody tr")
    await expect(rows.filter(has_text="Ada Lovelace")).to_contain_text("recovered")
    await expect(rows.filter(has_text="Grace Hopper")).to_contain_text("abandoned")
    assert await accessibility_violations(page) == []

    await page.get_by_role("link", name="Ada Lovelace").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Alert for Ada Lovelace")
    await expect(page.locator("#recovery")).to_contain_text(
        "Recovered 4 min later at ATM-0042 (another terminal)")
    assert await accessibility_violations(page) == []
    assert grace not in await page.content()


@pytest.mark.timeout(120)
async def test_a_badge_appears_on_the_open_list_when_the_watch_is_decided(
        served: Served, browser_tab: BrowserTab) -> None:
    """The list is open while Ada recovers and Grace gives up: both badges appear without a reload, accessible."""
    page = browser_tab.page
    ada, _grace = watched(served, 1, "Ada Lovelace"), watched(served, 2, "Grace Hopper")
    link = f"{PUBLIC_URL}/workspace/sign-in/{served.tokens.issue(CLAIRE.manager_id)}"
    await page.goto(link.replace(PUBLIC_URL, served.url))
    await page.get_by_role("button", name=f"Sign in as {CLAIRE.name}").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("My clients' alerts")
    rows = page.get_by_role("table").locator("tbody tr")
    await expect(rows).to_have_count(2)
    await expect(page.locator("span.badge")).to_have_count(0)  # both watching
    await page.evaluate("window.notReloaded = true")

    await asyncio.to_thread(
        served.store.mark_recovered,
        [RecoveryMatch(alert_id=ada, recovered_at=T0 + timedelta(minutes=4), event_id="ok-1",
                       terminal_id="ATM-0042")], now=T0 + timedelta(minutes=4))
    ada_badge = rows.filter(has_text="Ada Lovelace").locator("span.badge")
    await expect(ada_badge).to_have_text("recovered")
    await expect(ada_badge).to_have_class("badge badge-recovered")
    later = T0 + timedelta(minutes=31)
    await asyncio.to_thread(served.store.abandon_watches, later, now=later)
    grace_badge = rows.filter(has_text="Grace Hopper").locator("span.badge")
    await expect(grace_badge).to_have_text("abandoned")
    await expect(grace_badge).to_have_class("badge badge-abandoned")
    await expect(page.locator("span.badge")).to_have_count(2)  # one each, none doubled
    assert await page.evaluate("window.notReloaded") is True
    assert await accessibility_violations(page) == []
    assert browser_tab.errors == []  # no script error, no policy violation


@pytest.mark.timeout(120)
async def test_a_french_list_gets_its_badge_live_and_never_another_managers(
        store_location: Path | str, smtp_sink: SmtpSink, browser_tab: BrowserTab) -> None:
    """Claire reads French: Ada's watch abandoned shows "abandon" live; Jonas's decided alert never appears."""
    from dataclasses import replace

    french = replace(CLAIRE, locale="fr")
    jonas = Manager(manager_id="RM-042", name="Jonas Weber", email="jonas.weber@bank.example")
    async with serve_workspace(store_location, {CLAIRE.manager_id: french, jonas.manager_id: jonas},
                               smtp_sink=smtp_sink) as served:
        page = browser_tab.page
        watched(served, 1, "Ada Lovelace")
        failure = _make_failure("ev-9", T0, customer_id="C-0009", customer_name="Alan Turing",
                                manager=jonas)
        [his] = served.store.record([failure], now=T0, recovery_window_seconds=1800).new_alert_ids
        link = f"{PUBLIC_URL}/workspace/sign-in/{served.tokens.issue(CLAIRE.manager_id)}"
        await page.goto(link.replace(PUBLIC_URL, served.url))
        await page.get_by_role("button").first.click()
        rows = page.locator("table#alerts tbody tr")
        await expect(rows).to_have_count(1)
        await expect(page.locator("span.badge")).to_have_count(0)
        await asyncio.to_thread(
            served.store.mark_recovered,
            [RecoveryMatch(alert_id=his, recovered_at=T0 + timedelta(minutes=4), event_id="ok-9",
                           terminal_id="ATM-0042")], now=T0 + timedelta(minutes=4))
        later = T0 + timedelta(minutes=31)
        await asyncio.to_thread(served.store.abandon_watches, later, now=later)
        badge = rows.filter(has_text="Ada Lovelace").locator("span.badge")
        await expect(badge).to_have_text("abandon")
        await expect(page.locator("span.badge")).to_have_count(1)
        await expect(rows).to_have_count(1)
        assert "Alan Turing" not in await page.content()
        assert await page.locator("html").get_attribute("lang") == "fr"
        assert browser_tab.errors == []
