"""monitor.testing.browser: finding the system's Chromium, skipping or failing without it, tabs that report errors."""

from __future__ import annotations

import sys

import pytest
from playwright.async_api import Browser, Route

from monitor.testing.browser import (
    BrowserTab,
    accessibility_violations,
    chromium_or_skip,
    find_chromium,
    open_tab,
)

MISSING = "/nonexistent/cardmon-test/chromium"


def test_an_explicit_chromium_is_the_only_one_tried() -> None:
    """CARDMON_CHROMIUM names the executable; a missing one gives None even where chromium is on the PATH."""
    assert find_chromium({"CARDMON_CHROMIUM": sys.executable}) == sys.executable
    assert find_chromium({"CARDMON_CHROMIUM": MISSING}) is None


def test_without_chromium_a_browser_test_is_skipped_with_the_reason() -> None:
    """No Chromium and no requirement: the test is skipped, and the reason names the package to install."""
    with pytest.raises(pytest.skip.Exception, match="install Debian's package 'chromium'"):
        chromium_or_skip({"CARDMON_CHROMIUM": MISSING})


def test_without_chromium_a_required_browser_test_fails() -> None:
    """With CARDMON_REQUIRE_BROWSER=1 (as in CI), a missing Chromium fails the test instead of skipping it."""
    with pytest.raises(pytest.fail.Exception, match="CARDMON_REQUIRE_BROWSER=1"):
        chromium_or_skip({"CARDMON_CHROMIUM": MISSING, "CARDMON_REQUIRE_BROWSER": "1"})


async def _fulfil(route: Route) -> None:
    await route.fulfill(
        status=200, content_type="text/html",
        headers={"Content-Security-Policy": "default-src 'none'"},
        body="<!doctype html><html lang=en><title>t</title><script>window.ran = true</script>"
             "<p>page</p></html>",
    )


async def test_a_tab_records_what_the_content_security_policy_refused_and_script_errors(
        browser_tab: BrowserTab) -> None:
    """An inline script refused by the page's CSP and an uncaught script error both land in the tab's errors."""
    page = browser_tab.page
    await page.route("http://cardmon.test/**", _fulfil)
    async with page.expect_console_message(lambda message: "Content Security Policy" in message.text):
        await page.goto("http://cardmon.test/page")
    assert await page.evaluate("window.ran === undefined")  # the CSP did refuse it
    assert any(e.startswith("console:") and "Content Security Policy" in e for e in browser_tab.errors)
    async with page.expect_event("pageerror"):  # the tab's own listener was registered first
        await page.evaluate("setTimeout(() => { throw new Error('boom') }, 0)")
    assert any(e.startswith("page:") and "boom" in e for e in browser_tab.errors)


async def test_each_tab_has_its_own_cookies(chromium: Browser) -> None:
    """Two tabs of one browser share no cookie: each opens in a fresh context."""
    async with open_tab(chromium) as first, open_tab(chromium) as second:
        await first.page.context.add_cookies([{"name": "session", "value": "x", "url": "http://cardmon.test/"}])
        assert [c["name"] for c in await first.page.context.cookies()] == ["session"]
        assert await second.page.context.cookies() == []


async def test_axe_core_finds_a_missing_language_an_unlabelled_field_and_poor_contrast(
        browser_tab: BrowserTab) -> None:
    """accessibility_violations names the rules a page breaks, even under a strict Content-Security-Policy."""
    page = browser_tab.page

    async def fulfil(route: Route) -> None:
        await route.fulfill(
            status=200, content_type="text/html",
            headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
            body="<!doctype html><html><title>t</title><main><h1>Alerts</h1>"
                 "<p style='color:#bbb;background:#fff'>faint text</p><input type=text></main></html>",
        )

    await page.route("http://cardmon.test/**", fulfil)
    await page.goto("http://cardmon.test/bad")
    rules = {line.split(" ")[0] for line in await accessibility_violations(page)}
    assert {"html-has-lang", "label", "color-contrast"} <= rules
