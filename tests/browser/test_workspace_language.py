"""The workspace in the manager's language in a real browser: French and Simplified Chinese pages, accessible.

Real parts: the API with the workspace over real HTTP on 127.0.0.1, a real SQLite or
PostgreSQL store, a real SMTP server, the system's headless Chromium (Playwright) with a
French or Chinese browser language, and axe-core.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from monitor.alerts.delivery.channels import EmailChannel
from monitor.alerts.store import AlertStore
from monitor.api import build_api, start_api
from monitor.domain import AlertEvent, Manager, VipFailure
from monitor.paths import rules_path
from monitor.pipeline.classify import default_table
from monitor.pipeline.selection import AlertPolicy
from monitor.testing.browser import accessibility_violations, open_tab
from monitor.testing.smtp import SmtpSink
from monitor.workspace import Sessions, SignInMailer, SignInTokens, Workspace

SECRET = "workspace-secret-for-browser-tests-0123"
PUBLIC_URL = "http://cardmon.bank.example"
AMELIE = Manager(manager_id="RM-033", name="Amélie Durand", email="amelie.durand@bank.example",
                 timezone="Europe/Paris", locale="fr")
WEI = Manager(manager_id="RM-088", name="Li Wei", email="li.wei@bank.example",
              timezone="Asia/Shanghai", locale="zh-Hans")
RAW_PAN = "4111111111111111"
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@dataclass
class Served:
    """The workspace under test: its base URL, its store and its sign-in tokens."""

    url: str
    store: AlertStore
    tokens: SignInTokens

    def alert(self, number: int, manager: Manager) -> str:
        """Record one technical failure (code 91) of ``manager``'s client ``number``; return the alert ID."""
        event = AlertEvent(
            event_id=f"ev-{number}", occurred_at=T0, channel="ATM", terminal_id="ATM00042",
            merchant_id="BNKPARIS0001", txn_type="withdrawal", amount_minor=13409, currency="EUR",
            response_code="91", outcome="technical", response_meaning=default_table().meaning("91"),
            pan_masked=RAW_PAN, card_ref=RAW_PAN)
        failure = VipFailure(event=event, customer_id=f"C-{number:04d}", customer_name=f"Client {number}",
                             tier="private", manager=manager, severity="high",
                             suggested_action=AlertPolicy.load(rules_path("alerting.yaml")).action_for("technical"))
        [alert_id] = self.store.record([failure], now=T0 + timedelta(minutes=1)).new_alert_ids
        return alert_id


@pytest.fixture
async def served(store_location: Path | str, smtp_sink: SmtpSink) -> AsyncIterator[Served]:
    """The API with the workspace on a free port of 127.0.0.1, with a French and a Chinese manager."""
    managers = {m.manager_id: m for m in (AMELIE, WEI)}
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


@pytest.mark.timeout(180)
async def test_a_french_manager_acknowledges_in_french_in_a_real_browser(served: Served,
                                                                         chromium: Browser) -> None:
    """A French browser gets the French sign-in form; Amélie's pages are French, pass axe-core, and her French "Acquitter" acknowledges."""
    alert_id = served.alert(1, AMELIE)
    async with open_tab(chromium, locale="fr-FR") as tab:
        page = tab.page
        await page.goto(f"{served.url}/workspace/sign-in")
        await expect(page.get_by_role("heading", level=1)).to_have_text("Connexion")
        assert await page.get_attribute("html", "lang") == "fr"
        assert await accessibility_violations(page) == []

        await page.goto(f"{served.url}/workspace/sign-in/{served.tokens.issue(AMELIE.manager_id)}")
        await page.get_by_role("button", name="Se connecter en tant que Amélie Durand").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Alertes de mes clients")
        assert await accessibility_violations(page) == []

        await page.get_by_role("link", name="Client 1").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Alerte pour Client 1")
        await expect(page.locator("main")).to_contain_text("134,09\u00a0€")
        await expect(page.locator("main")).to_contain_text("Émetteur ou commutateur hors service")
        assert await accessibility_violations(page) == []
        await page.get_by_label("Note (facultative)").fill("J’appelle la cliente")
        await page.get_by_role("button", name="Acquitter").click()
        await expect(page.get_by_role("table").nth(-1)).to_contain_text("J’appelle la cliente")
        await expect(page.get_by_role("button", name="Résoudre")).to_be_visible()
        assert served.store.state_of(alert_id) == "acknowledged"
        assert RAW_PAN not in await page.content()
        assert tab.errors == []


@pytest.mark.timeout(180)
async def test_a_chinese_managers_pages_are_in_simplified_chinese_and_accessible(served: Served,
                                                                                 chromium: Browser) -> None:
    """Li Wei's list and alert pages are in Simplified Chinese (lang zh-Hans, Shanghai time) and pass axe-core."""
    served.alert(2, WEI)
    async with open_tab(chromium, locale="zh-CN") as tab:
        page = tab.page
        await page.goto(f"{served.url}/workspace/sign-in/{served.tokens.issue(WEI.manager_id)}")
        await page.get_by_role("button", name="以 Li Wei 身份登录").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("我的客户告警")
        assert await page.get_attribute("html", "lang") == "zh-Hans"
        assert await accessibility_violations(page) == []
        await page.get_by_role("link", name="Client 2").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Client 2 的告警")
        await expect(page.locator("main")).to_contain_text("2026/12/7 17:00:00 CST")
        assert await accessibility_violations(page) == []
        assert RAW_PAN not in await page.content()
        assert tab.errors == []
