"""The README shows the workspace's alert page: the picture it links exists and is a PNG."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_links_an_existing_png_of_the_alert_page() -> None:
    """The README's image of the workspace points at a committed PNG file (made by docs/screenshot.py)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"!\[The alert page of the workspace[^\]]*\]\(([^)]+\.png)\)", readme)
    assert found is not None
    picture = ROOT / found.group(1)
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (ROOT / "docs" / "screenshot.py").is_file()
