"""docs/screenshot.py, which makes the README's picture of the alert page, keeps working."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from monitor.testing.browser import chromium_or_skip

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
async def test_the_screenshot_script_writes_a_png_of_the_alert_page(tmp_path: Path) -> None:
    """The script serves a real workspace, signs in and writes a full-page PNG of one alert."""
    chromium_or_skip()
    spec = importlib.util.spec_from_file_location("cardmon_docs_screenshot", ROOT / "docs" / "screenshot.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "alert.png"
    assert await script.main(out) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
