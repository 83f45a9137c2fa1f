"""`cardmon terminals impact`: the repair-priority ranking from the shell."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from monitor.alerts.store import AlertStore
from monitor.cli import app as cli_app
from tests.alerts.conftest import _make_failure

pytestmark = pytest.mark.usefixtures("clean_environment")  # no CARDMON_* from the caller

UNTIL = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _record(path: Path) -> None:
    failures = [_make_failure(f"ev-{n}", UNTIL - timedelta(hours=hours), customer_id=customer,
                              customer_name=f"Client {customer}", terminal_id=terminal,
                              outcome=outcome, response_code=None if outcome == "technical" else "51")
                for n, (terminal, customer, hours, outcome) in enumerate([
                    ("ATM-HOT", "C-1", 1, "technical"), ("ATM-HOT", "C-2", 2, "technical"),
                    ("ATM-OLD", "C-3", 30, "technical"), ("ATM-OLD", "C-4", 40, "technical"),
                    ("ATM-OLD", "C-5", 50, "technical"),
                    ("ATM-FUNDS", "C-6", 1, "customer")])]
    with AlertStore(path) as store:
        store.record(failures, now=UNTIL)


def test_the_ranking_prints_each_window_worst_first(tmp_path: Path) -> None:
    """24h ranks the hot ATM alone; 7d puts the one with more clients first; a client's own decline never counts."""
    path = tmp_path / "alerts.db"
    _record(path)
    result = CliRunner().invoke(cli_app, ["terminals", "impact", "--store", str(path),
                                          "--until", "2026-12-07T12:00:00+0000"])
    assert result.exit_code == 0, result.output
    day, week = result.stdout.split("\n\n")
    assert day.startswith("VIP impact, 24h until 2026-12-07 12:00 UTC (classes: technical, terminal, card)")
    assert [line.split()[:2] for line in day.splitlines()[2:]] == [["1", "ATM-HOT"]]
    assert [line.split()[:2] for line in week.splitlines()[2:]] == [["1", "ATM-OLD"], ["2", "ATM-HOT"]]
    header, first = week.splitlines()[1:3]
    assert header.split()[:7] == ["RANK", "TERMINAL", "CHANNEL", "MERCHANT", "CLIENTS", "FAILURES", "MANAGERS"]
    assert first.split()[4:7] == ["3", "3", "1"]
    assert "ATM-FUNDS" not in result.stdout


def test_one_window_and_top_bound_the_output_and_an_empty_period_says_so(tmp_path: Path) -> None:
    """--window 7d --top 1 prints one terminal; a period without failures prints a sentence, not an empty table."""
    path = tmp_path / "alerts.db"
    _record(path)
    top = CliRunner().invoke(cli_app, ["terminals", "impact", "--store", str(path), "--window", "7d",
                                       "--top", "1", "--until", "2026-12-07T12:00:00+0000"])
    assert top.exit_code == 0 and len(top.stdout.splitlines()) == 3
    empty = CliRunner().invoke(cli_app, ["terminals", "impact", "--store", str(path), "--window", "24h",
                                         "--until", "2025-01-01"])
    assert empty.exit_code == 0 and "no VIP failures of these classes in the period" in empty.stdout
