"""A real browser for tests: the system's headless Chromium driven by Playwright.

Browsers cannot be downloaded where cardmon is built and tested, so Playwright's own
browser builds are never used: the tests drive the distribution's Chromium (Debian
package ``chromium``, ``/usr/bin/chromium``), found by :func:`find_chromium`. Each
:func:`launch_chromium` starts a fresh browser; Playwright gives it a new temporary
profile (``--user-data-dir``) that it deletes at close, so no cookie, cache or storage
passes from one test to another.

A test that needs the browser where it is missing is skipped with the reason, unless
``CARDMON_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where it fails: CI never skips a
browser test silently (:func:`chromium_or_skip`).

Needs cardmon's test extras (``pip install 'cardmon[test]'``: ``playwright``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

import pytest
from axe_playwright_python.async_playwright import Axe  # type: ignore[import-untyped]
from playwright.async_api import Browser, ConsoleMessage, Error, Page, async_playwright, expect

__all__ = [
    "CHROMIUM_FLAGS",
    "REQUIRE_BROWSER_VARIABLE",
    "WCAG_TAGS",
    "BrowserTab",
    "accessibility_violations",
    "chromium_or_skip",
    "find_chromium",
    "launch_chromium",
    "open_tab",
]

#: ``1`` turns "no browser here" from a skip into a failure (CI sets it).
REQUIRE_BROWSER_VARIABLE: Final = "CARDMON_REQUIRE_BROWSER"
#: An explicit Chromium executable, instead of ``chromium`` on the ``PATH``.
CHROMIUM_VARIABLE: Final = "CARDMON_CHROMIUM"
#: Executable names of the distributions' Chromium, tried in order on the ``PATH``.
_CHROMIUM_NAMES: Final = ("chromium", "chromium-browser")

#: Flags of a quiet, self-contained headless Chromium (Playwright adds ``--headless``
#: and a fresh ``--user-data-dir`` itself):
#: no sandbox (tests run as root in containers, where Chromium's sandbox cannot start),
#: no GPU (none here), no QUIC (plain TCP to the local server), no first-run dialogs,
#: and none of the background traffic (updates, sync, safe browsing lists) that would
#: reach out of the machine and slow the start.
CHROMIUM_FLAGS: Final = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: The axe-core rule sets :func:`accessibility_violations` applies: WCAG 2.0 and 2.1,
#: levels A and AA (labels, names, language, title, contrast, keyboard traps...).
WCAG_TAGS: Final = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
#: Milliseconds a Playwright action or navigation waits before failing: generous,
#: because the machines that run the tests are shared and a start can be slow; a
#: condition that holds is seen at once (Playwright waits on events, never sleeps).
DEFAULT_TIMEOUT_MS: Final = 20_000


def find_chromium(environ: Mapping[str, str] | None = None) -> str | None:
    """Path of the system's Chromium, or ``None`` where there is none.

    Args:
        environ: the environment (default ``os.environ``); ``CARDMON_CHROMIUM`` names
            an executable explicitly (it is then the only one tried).

    Returns:
        An executable path, or ``None`` when the named or usual executables are absent.
    """
    environ = os.environ if environ is None else environ
    explicit = environ.get(CHROMIUM_VARIABLE)
    if explicit:
        return shutil.which(explicit)
    for name in _CHROMIUM_NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


def chromium_or_skip(environ: Mapping[str, str] | None = None) -> str:
    """Path of the system's Chromium; skip the calling test where there is none.

    Args:
        environ: the environment (default ``os.environ``).

    Returns:
        The executable path.

    Raises:
        pytest.skip.Exception: no Chromium, and the browser is not required.
        pytest.fail.Exception: no Chromium, and ``CARDMON_REQUIRE_BROWSER=1``.
    """
    environ = os.environ if environ is None else environ
    path = find_chromium(environ)
    if path is None:
        where = environ.get(CHROMIUM_VARIABLE) or " or ".join(_CHROMIUM_NAMES)
        reason = f"no Chromium found ({where}); install Debian's package 'chromium'"
        if environ.get(REQUIRE_BROWSER_VARIABLE) == "1":
            pytest.fail(f"{reason} ({REQUIRE_BROWSER_VARIABLE}=1)")
        pytest.skip(reason)
    return path


@asynccontextmanager
async def launch_chromium(executable: str) -> AsyncIterator[Browser]:
    """Start a headless Chromium with a fresh profile; close it and Playwright at exit.

    Args:
        executable: the Chromium executable (:func:`chromium_or_skip`).

    Yields:
        The Playwright ``Browser``.

    Raises:
        playwright.async_api.Error: the browser did not start (its output is in the message).
    """
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=list(CHROMIUM_FLAGS),
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class BrowserTab:
    """One page in its own browser context, and what went wrong in it.

    Attributes:
        page: the Playwright ``Page``.
        errors: console errors (a refused resource under the page's Content-Security-
            Policy is one) and uncaught script errors, as text, in order.
    """

    page: Page
    errors: list[str] = field(default_factory=list)


@asynccontextmanager
async def open_tab(browser: Browser, *, locale: str = "en-GB",
                   timeout_ms: int = DEFAULT_TIMEOUT_MS) -> AsyncIterator[BrowserTab]:
    """Open a page in a new, empty browser context (its own cookies and storage).

    Args:
        browser: a started browser (:func:`launch_chromium`).
        locale: the browser's language (``Accept-Language`` and ``navigator.language``).
        timeout_ms: how long an action, a navigation or an ``expect`` assertion may
            wait, in milliseconds.

    Yields:
        The :class:`BrowserTab`; its context is closed at exit.
    """
    # Playwright's ``expect`` assertions wait 5 s by default (a module-wide setting):
    # as long as an action here, since a page answered by a loaded machine can be slow.
    expect.set_options(timeout=timeout_ms)
    context = await browser.new_context(locale=locale)
    try:
        context.set_default_timeout(timeout_ms)
        context.set_default_navigation_timeout(timeout_ms)
        page = await context.new_page()
        tab = BrowserTab(page)

        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                tab.errors.append(f"console: {message.text}")

        def page_error(error: Error) -> None:
            tab.errors.append(f"page: {error}")

        page.on("console", console)
        page.on("pageerror", page_error)
        yield tab
    finally:
        await context.close()


async def accessibility_violations(page: Page, *, tags: tuple[str, ...] = WCAG_TAGS) -> list[str]:
    """What axe-core (the accessibility engine, bundled by ``axe-playwright-python``)
    finds wrong with the page as it is now.

    Args:
        page: a loaded page.
        tags: the axe-core rule tags to apply (default WCAG 2.1 A and AA).

    Returns:
        One line per violated rule: ``"{rule} ({impact}): {help} at {selectors}"``;
        empty when the page passes (``assert await accessibility_violations(page) == []``).
    """
    results = await Axe().run(page, options={"runOnly": {"type": "tag", "values": list(tags)},
                                             "resultTypes": ["violations"]})
    found = []
    for violation in results.response["violations"]:
        targets = ", ".join(" ".join(map(str, node["target"])) for node in violation["nodes"])
        found.append(f"{violation['id']} ({violation['impact']}): {violation['help']} at {targets}")
    return found
