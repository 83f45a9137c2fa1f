"""`cardmon report` refuses huge periods, overwriting the store, and unwritable outputs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from monitor.cli import app as cli_app
from tests.report.test_report_cli import PERIOD, _config

pytestmark = pytest.mark.usefixtures("clean_environment")  # no CARDMON_* from the caller


def _run(config: Path, *options: str) -> object:
    return CliRunner().invoke(cli_app, ["report", "--config", str(config), *options])


def test_a_period_longer_than_a_year_is_refused_fast(tmp_path: Path) -> None:
    """A period over 366 days exits 2 with the reason, writing nothing; --help states the limit."""
    config = _config(tmp_path)
    out = tmp_path / "huge.html"
    result = CliRunner().invoke(
        cli_app,
        ["report", "--since", "0001-01-01", "--until", "9999-12-31", "--config", str(config),
         "-o", str(out)],
    )
    assert result.exit_code == 2, result.output
    assert "longer than 366 days" in result.stderr and not out.exists()
    year = CliRunner().invoke(
        cli_app,
        ["report", "--since", "2026-01-01", "--until", "2027-01-01", "--config", str(config),
         "-o", str(out)],
    )
    assert year.exit_code == 0, year.output
    helped = CliRunner().invoke(cli_app, ["report", "--help"], env={"COLUMNS": "200"})
    assert "366 days" in helped.stdout


def test_the_store_and_the_other_output_are_never_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--output or --pdf naming the SQLite store (any spelling), or both naming one file, exit 2."""
    config = _config(tmp_path)
    store = tmp_path / "alerts.db"
    before = store.read_bytes()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    for options, reason in (
        (["-o", "alerts.db"], "is the alert store"),
        (["-o", "sub/../alerts.db"], "is the alert store"),
        (["-o", "r.html", "--pdf", str(store)], "is the alert store"),
        (["-o", "same.html", "--pdf", "./same.html"], "are the same file"),
    ):
        result = _run(config, *PERIOD, *options)
        assert result.exit_code == 2 and reason in result.stderr, (options, result.output)
    by_store = CliRunner().invoke(
        cli_app, ["report", *PERIOD, "--store", str(store), "-o", str(store)]
    )
    assert by_store.exit_code == 2 and "is the alert store" in by_store.stderr, by_store.output
    assert store.read_bytes() == before
    assert not (tmp_path / "same.html").exists() and not (tmp_path / "r.html").exists()
    old = tmp_path / "old.html"
    old.write_text("last week's report", encoding="utf-8")
    assert _run(config, *PERIOD, "-o", str(old)).exit_code == 0
    assert "last week" not in old.read_text(encoding="utf-8")


@pytest.mark.parametrize("option", ["--output", "--pdf"])
def test_an_unwritable_output_is_one_line_not_a_traceback(
    tmp_path: Path, option: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unwritable output exits 1, a directory exits 2, each with a one-line reason."""
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # no PDF is laid out: the path fails first
    config = _config(tmp_path)
    html = ["-o", str(tmp_path / "r.html")] if option == "--pdf" else []
    unwritable = _run(config, *PERIOD, *html, option, "/proc/cardmon-report/x.html")
    assert unwritable.exit_code == 1, unwritable.output
    assert "cannot write /proc/cardmon-report/x.html" in unwritable.stderr
    assert "Traceback" not in unwritable.output and len(unwritable.stderr.splitlines()) == 1
    directory = _run(config, *PERIOD, *html, option, str(tmp_path))
    assert directory.exit_code == 2 and "is a directory" in directory.stderr, directory.output


def test_a_failed_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files are written beside and renamed: a PDF that cannot be made leaves no file at all."""
    monkeypatch.setitem(sys.modules, "weasyprint", None)
    config = _config(tmp_path)
    out_dir = tmp_path / "out"
    result = _run(config, *PERIOD, "-o", str(out_dir / "r.html"), "--pdf", str(out_dir / "r.pdf"))
    assert result.exit_code == 1, result.output
    assert sorted(p.name for p in out_dir.iterdir()) == ["r.html"]
