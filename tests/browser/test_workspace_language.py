"""The workspace in the manager's language in a real browser: French and Simplified Chinese pages, accessible.

Real parts: the API with the workspace over real HTTP on 127.0.0.1, a real SQLite or
PostgreSQL store, a real SMTP server, the system's headless Chromium (Playwright) with a
French or Chinese browser language, and axe-core.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from monitor.domain import Manager
from monitor.paths import rules_path
from monitor.pipeline.classify import default_table
from monitor.pipeline.selection import AlertPolicy
from monitor.testing.browser import accessibility_violations, open_tab
from monitor.testing.smtp import SmtpSink
from tests.browser.served import RAW_PAN, T0, serve_workspace
from tests.browser.served import Served as _Served

AMELIE = Manager(manager_id="RM-033", name="Amélie Durand", email="amelie.durand@bank.example",
                 timezone="Europe/Paris", locale="fr")
WEI = Manager(manager_id="RM-088", name="Li Wei", email="li.wei@bank.example",
              timezone="Asia/Shanghai", locale="zh-Hans")


class Served(_Served):
    """The workspace under test; its failures carry the rule files' English texts (translated when shown)."""

    def alert(self, number: int, manager: Manager, name: str | None = None, **fields: object) -> str:  # type: ignore[override]
        """Record one technical failure (code 91) of ``manager``'s client ``number`` at T0; return the alert ID."""
        return super().alert(number, manager, name, at=T0, response_meaning=default_table().meaning("91"),
                             suggested_action=AlertPolicy.load(rules_path("alerting.yaml")).action_for("technical"))


@pytest.fixture
async def served(store_location: Path | str, smtp_sink: SmtpSink) -> AsyncIterator[Served]:
    """The API with the workspace on a free port of 127.0.0.1, with a French and a Chinese manager."""
    async with serve_workspace(store_location, {m.manager_id: m for m in (AMELIE, WEI)},
                               smtp_sink=smtp_sink) as base:
        yield Served(base.url, base.store, base.tokens)


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
