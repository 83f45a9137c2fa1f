"""The fast-correction report opens in the real browser from disk: whole, no request, no error."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from playwright.async_api import Request, expect

from monitor.alerts.store import AlertStore
from monitor.report import gather, render_html
from monitor.testing.browser import BrowserTab, accessibility_violations, chromium_or_skip
from tests.report import known

ROOT = Path(__file__).resolve().parents[2]


def _write_report(folder: Path, team: str | None = None,
                  manager_ids: tuple[str, ...] | None = None) -> Path:
    known.build(folder / "alerts.db")
    with AlertStore(folder / "alerts.db") as store:
        data = gather(
            store,
            since=known.SINCE,
            until=known.UNTIL,
            zone="Europe/Paris",
            terminal_classes=known.OWN_CLASSES,
            now=known.NOW,
            team=team,
            manager_ids=manager_ids,
        )
    page_file = folder / "report.html"
    page_file.write_text(render_html(data), encoding="utf-8")
    return page_file


@pytest.mark.timeout(120)
async def test_the_report_opens_offline_with_every_plot_and_no_error(
    tmp_path: Path, browser_tab: BrowserTab
) -> None:
    """From disk: no console error, no request but the file, every plot drawn, axe finds nothing."""
    page_file = _write_report(tmp_path)
    page = browser_tab.page
    requested: list[str] = []
    failed: list[str] = []

    def on_request(request: Request) -> None:
        requested.append(request.url)

    def on_failed(request: Request) -> None:
        failed.append(f"{request.url}: {request.failure}")

    page.on("request", on_request)
    page.on("requestfailed", on_failed)
    await page.goto(page_file.as_uri())
    await expect(
        page.get_by_role("heading", name="Fast-correction report", level=1)
    ).to_be_visible()
    images = page.locator("main img")
    await expect(images).to_have_count(5)
    for index in range(5):
        image = images.nth(index)
        assert await image.evaluate("img => img.complete && img.naturalWidth > 0"), index
        assert (await image.get_attribute("alt") or "").strip()
    figures = json.loads(await page.locator("#report-figures").text_content() or "{}")
    assert figures["failures"] == known.EXPECTED["failures"]
    await expect(page.locator("[data-figure=failures]")).to_have_text("9")
    assert [u for u in requested if not u.startswith("data:")] == [page_file.as_uri()]
    assert failed == [] and browser_tab.errors == []
    assert await accessibility_violations(page) == []


@pytest.mark.timeout(120)
async def test_the_team_report_opens_without_error(tmp_path: Path, browser_tab: BrowserTab) -> None:
    """A team lead's report (a table per manager) opens from disk without a console error."""
    page_file = _write_report(tmp_path, team="RM-017", manager_ids=("RM-017", "RM-042"))
    await browser_tab.page.goto(page_file.as_uri())
    await expect(browser_tab.page.get_by_role("heading", level=3)).to_have_count(2)
    await expect(browser_tab.page.get_by_text("Team of Claire Martin (RM-017)")).to_be_visible()
    assert browser_tab.errors == []


@pytest.mark.timeout(120)
async def test_the_report_screenshot_script_writes_a_png(tmp_path: Path) -> None:
    """docs/report_screenshot.py records a sample week and writes a PNG of the report's top."""
    chromium_or_skip()
    spec = importlib.util.spec_from_file_location(
        "cardmon_report_screenshot", ROOT / "docs" / "report_screenshot.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "report.png"
    assert await script.main(out) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
