"""The README shows the fast-correction report: the picture it links is a PNG with its script."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_links_an_existing_png_of_the_report() -> None:
    """The README's image of the report is a committed PNG made by docs/report_screenshot.py."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"!\[The fast-correction report[^\]]*\]\(([^)]+\.png)\)", readme)
    assert found is not None
    assert (ROOT / found.group(1)).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (ROOT / "docs" / "report_screenshot.py").is_file()
    assert "(docs/report.md)" in readme
