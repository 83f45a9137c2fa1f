"""The acknowledgement link page in a real browser (the system's headless Chromium).

The API application is served over real HTTP on 127.0.0.1 with a real alert store
(SQLite, and PostgreSQL for the main journey) and signed links; the browser opens the
link exactly as a manager's mail client would hand it over, and the test reads the page
as a person would: by headings, labels and button names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from playwright.async_api import Page, expect

from monitor.alerts.delivery.links import AckLinks
from monitor.alerts.store import AlertStore
from monitor.api import build_api, start_api
from monitor.domain import AlertEvent, Manager, VipFailure
from monitor.testing.browser import BrowserTab, accessibility_violations

SECRET = "link-secret-for-browser-tests-0123"
RAW_PAN = "4111111111111111"
CLAIRE = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example",
                 timezone="Europe/Paris")
T0 = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)


def _failure(number: int) -> VipFailure:
    event = AlertEvent(
        event_id=f"ev-{number}", occurred_at=T0, channel="ATM", terminal_id="ATM00042",
        merchant_id="BNKPARIS0001", txn_type="withdrawal", amount_minor=13409, currency="EUR",
        response_code="91", outcome="technical", response_meaning="Issuer or switch is inoperative",
        pan_masked=RAW_PAN, card_ref=RAW_PAN,  # a PAN that slipped in: the store masks it
    )
    return VipFailure(event=event, customer_id=f"C-{number:04d}", customer_name=f"Client {number}",
                      tier="private", manager=CLAIRE, severity="high",
                      suggested_action="Call the client to apologise.")


class Served:
    """The API under test: its base URL, its store and its link signer."""

    def __init__(self, url: str, store: AlertStore, links: AckLinks) -> None:
        self.url, self.store, self.links = url, store, links

    def alert(self, number: int = 1) -> str:
        """Record one VIP failure of Claire's client ``number``; return the new alert's ID."""
        [alert_id] = self.store.record([_failure(number)]).new_alert_ids
        return alert_id

    def link(self, alert_id: str, manager_id: str = "RM-017") -> str:
        """The link a notification carries, pointed at this server."""
        parts = urlsplit(self.links.url(alert_id, manager_id))
        return f"{self.url}{parts.path}?{parts.query}"


async def _serve(location: Path | str) -> AsyncIterator[Served]:
    links = AckLinks(SECRET, "https://cardmon.bank.example")
    with AlertStore(location) as store:
        server = await start_api(build_api(store, links=links))
        try:
            yield Served(server.url, store, links)
        finally:
            await server.close()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    """The API with ack links on a free port of 127.0.0.1, over a fresh SQLite store."""
    async for value in _serve(tmp_path / "alerts.db"):
        yield value


@pytest.fixture
async def served_on_each_store(store_location: Path | str) -> AsyncIterator[Served]:
    """The API with ack links over a fresh SQLite store, then over a fresh PostgreSQL schema."""
    async for value in _serve(store_location):
        yield value


async def _focus_by_tab(page: Page, name: str, *, most: int = 10) -> None:
    """Press Tab until the button called ``name`` has the focus (at most ``most`` presses)."""
    button = page.get_by_role("button", name=name)
    for _ in range(most):
        await page.keyboard.press("Tab")
        if await button.evaluate("element => element === document.activeElement"):
            return
    raise AssertionError(f"{name!r} not reached with {most} presses of Tab")


async def test_a_manager_acknowledges_an_alert_from_the_link_in_a_real_browser(
        served_on_each_store: Served, browser_tab: BrowserTab) -> None:
    """The link shows the alert with a button; clicking it acknowledges as the link's manager, once, and the store's history says so."""
    served, page = served_on_each_store, browser_tab.page
    alert_id = served.alert()
    response = await page.goto(served.link(alert_id))
    assert response is not None and response.status == 200
    await expect(page.get_by_role("heading", level=1)).to_have_text("Acknowledge this alert?")
    await expect(page).to_have_title("Acknowledge this alert? · cardmon")
    body = page.locator("body")
    for shown in (alert_id, "Client 1 (private)", "high", "open"):
        await expect(body).to_contain_text(shown)
    assert RAW_PAN not in await page.content()
    assert served.store.state_of(alert_id) == "open"  # showing the page changed nothing

    await page.get_by_label("Note (optional)").fill("calling her now")
    await page.get_by_role("button", name="Acknowledge as RM-017").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Acknowledged")
    await expect(body).to_contain_text(f"Alert {alert_id} is acknowledged by RM-017")
    entry = served.store.history(alert_id)[-1]
    assert (entry.action, entry.actor, entry.via, entry.note) == (
        "acknowledged", "RM-017", "link", "calling her now")

    await page.goto(served.link(alert_id))  # the same link opened again later
    await expect(page.get_by_role("heading", level=1)).to_have_text("Already acknowledged")
    await expect(body).to_contain_text("already acknowledged by RM-017")
    await expect(page.get_by_role("button")).to_have_count(0)
    assert [h.action for h in served.store.history(alert_id)] == ["opened", "acknowledged"]
    assert browser_tab.errors == []  # nothing refused by the page's Content-Security-Policy


async def test_a_tampered_link_shows_the_refusal_page_and_changes_nothing(
        served: Served, browser_tab: BrowserTab) -> None:
    """A link whose token was altered answers the 403 refusal page, without a button, and the alert stays open."""
    page = browser_tab.page
    alert_id = served.alert()
    link = urlsplit(served.link(alert_id))
    token = parse_qs(link.query)["token"][0]
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    response = await page.goto(f"{served.url}{link.path}?{urlencode({'token': tampered})}")
    assert response is not None and response.status == 403
    await expect(page.get_by_role("heading", level=1)).to_have_text("Link refused")
    await expect(page.locator("body")).to_contain_text("Nothing was changed")
    await expect(page.get_by_role("button")).to_have_count(0)
    assert served.store.state_of(alert_id) == "open"
    assert [h.action for h in served.store.history(alert_id)] == ["opened"]


async def test_the_link_page_is_used_with_the_keyboard_alone(served: Served, browser_tab: BrowserTab) -> None:
    """Tab reaches the note and then the button, and Enter on the button acknowledges."""
    page = browser_tab.page
    alert_id = served.alert()
    await page.goto(served.link(alert_id))
    await page.keyboard.press("Tab")
    note = page.get_by_label("Note (optional)")
    await expect(note).to_be_focused()
    await page.keyboard.type("left a voicemail")
    await _focus_by_tab(page, "Acknowledge as RM-017")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Acknowledged")
    entry = served.store.history(alert_id)[-1]
    assert (entry.action, entry.actor, entry.note) == ("acknowledged", "RM-017", "left a voicemail")


async def test_the_link_page_declares_its_language_and_names_every_control(
        served: Served, browser_tab: BrowserTab) -> None:
    """The page has a lang, a title, a viewport for phones, a label for each field and a name for each button."""
    page = browser_tab.page
    await page.goto(served.link(served.alert()))
    assert await page.evaluate("document.documentElement.lang") == "en"
    assert (await page.title()).strip()
    viewport = page.locator('meta[name="viewport"]')
    assert "width=device-width" in (await viewport.get_attribute("content") or "")
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), textarea, select')]
               .filter(field => field.labels.length === 0 && !field.getAttribute('aria-label'))
               .map(field => field.outerHTML)""")
    assert unlabelled == []
    buttons = page.get_by_role("button")
    await expect(buttons).to_have_count(1)
    assert (await buttons.inner_text()).strip()
    assert browser_tab.errors == []


async def test_the_link_pages_pass_the_wcag_checks_of_axe_core(served: Served, browser_tab: BrowserTab) -> None:
    """The link page, its confirmation and its refusal page have no WCAG 2.1 A/AA violation axe-core can find."""
    page = browser_tab.page
    alert_id = served.alert()
    await page.goto(served.link(alert_id))
    assert await accessibility_violations(page) == []
    await page.get_by_role("button", name="Acknowledge as RM-017").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Acknowledged")
    assert await accessibility_violations(page) == []
    await page.goto(served.link(alert_id).replace("token=", "token=x"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Link refused")
    assert await accessibility_violations(page) == []
    assert not any("Content Security Policy" in error for error in browser_tab.errors)
