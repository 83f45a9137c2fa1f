"""`cardmon report`: a period's report from the shell, for the bank or a team, HTML and PDF."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from monitor.cli import app as cli_app
from tests.report import known
from tests.report.test_report_figures import embedded

pytestmark = pytest.mark.usefixtures("clean_environment")  # no CARDMON_* from the caller
#: CI (``.ci/run``) requires the PDF test to run: read before ``clean_environment`` clears CARDMON_*.
_REQUIRE_PDF = os.environ.get("CARDMON_REQUIRE_PDF") == "1"

PERIOD = ["--since", "2026-12-01", "--until", "2026-12-04"]


def _config(tmp_path: Path) -> Path:
    store = tmp_path / "alerts.db"
    known.build(store)
    config = tmp_path / "cardmon.yaml"
    config.write_text(
        f"alerting: {{store_path: {store}}}\nworkspace:\n  teams:\n    RM-017: [RM-042]\n",
        encoding="utf-8",
    )
    return config


def test_the_command_writes_the_bank_report(tmp_path: Path) -> None:
    """Dates alone are midnights in --timezone; the file holds the known store's numbers."""
    config = _config(tmp_path)
    out = tmp_path / "out" / "bank.html"
    result = CliRunner().invoke(
        cli_app, ["report", *PERIOD, "--config", str(config), "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (9 VIP failures, 6 alerts)" in result.stdout
    numbers = embedded(out.read_text(encoding="utf-8"))
    assert numbers["failures_by_day"] == known.EXPECTED["failures_by_day"]
    assert numbers["period"]["since"] == "2026-12-01T00:00:00+00:00"
    paris = CliRunner().invoke(
        cli_app,
        [
            "report",
            *PERIOD,
            "--timezone",
            "Europe/Paris",
            "--config",
            str(config),
            "--output",
            str(out),
        ],
    )
    assert paris.exit_code == 0, paris.output
    assert (
        embedded(out.read_text(encoding="utf-8"))["period"]["since"] == "2026-12-01T00:00:00+01:00"
    )


def test_a_team_report_and_the_refusals(tmp_path: Path) -> None:
    """--team reads workspace.teams; an unknown lead or zone or a reversed period exit 2."""
    config = _config(tmp_path)
    out = tmp_path / "team.html"
    result = CliRunner().invoke(
        cli_app,
        ["report", *PERIOD, "--team", "RM-017", "--config", str(config), "--output", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert [m["manager_id"] for m in embedded(out.read_text(encoding="utf-8"))["managers"]] == [
        "RM-017",
        "RM-042",
    ]
    for options, reason in (
        (["--team", "RM-002"], "no team led by 'RM-002'"),
        (["--timezone", "Mars/Olympus"], "unknown time zone"),
        (["--since", "2026-12-05"], "--until must be after --since"),
    ):
        refused = CliRunner().invoke(
            cli_app,
            [
                "report",
                *PERIOD,
                *options,
                "--config",
                str(config),
                "--output",
                str(tmp_path / "no.html"),
            ],
        )
        assert refused.exit_code == 2 and reason in refused.stderr, refused.output
    assert not (tmp_path / "no.html").exists()


def test_the_pdf_is_written_beside_the_html(tmp_path: Path) -> None:
    """--pdf lays the report out as PDF (WeasyPrint); skipped without it or Pango, unless CARDMON_REQUIRE_PDF=1."""
    try:
        import weasyprint  # type: ignore[import-untyped]  # noqa: F401
    except (ImportError, OSError) as error:
        if _REQUIRE_PDF:
            raise
        pytest.skip(f"WeasyPrint unavailable here ({error}): pip install 'cardmon[pdf]'")
    config = _config(tmp_path)
    pdf = tmp_path / "report.pdf"
    result = CliRunner().invoke(
        cli_app,
        [
            "report",
            *PERIOD,
            "--config",
            str(config),
            "--output",
            str(tmp_path / "r.html"),
            "--pdf",
            str(pdf),
        ],
    )
    assert result.exit_code == 0, result.output
    content = pdf.read_bytes()
    assert content.startswith(b"%PDF-") and len(content) > 10_000
    assert f"wrote {pdf}" in result.stdout


def test_without_weasyprint_the_pdf_is_refused_with_the_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where WeasyPrint cannot be imported, --pdf exits 1 naming the extra; the HTML is written."""
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # import weasyprint → ImportError
    config = _config(tmp_path)
    out, pdf = tmp_path / "r.html", tmp_path / "r.pdf"
    result = CliRunner().invoke(
        cli_app,
        ["report", *PERIOD, "--config", str(config), "--output", str(out), "--pdf", str(pdf)],
    )
    assert result.exit_code == 1
    assert "pip install 'cardmon[pdf]'" in result.stderr and "Traceback" not in result.output
    assert out.is_file() and not pdf.exists()
