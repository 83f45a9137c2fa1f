"""Smoke test of the fleet-scale benchmark on 2,000 terminals.

No timing assertion: only that it runs, serves every series and reports every field.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from bench.terminals import FleetReport, main

TERMINALS = 2_000
ROUNDS = 3
REPEAT = 2


def test_benchmark_serves_every_series_and_reports_time_and_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A 2,000-terminal run prints and writes every FleetReport field, with the fleet's series count."""
    out = tmp_path / "fleet.json"
    code = main(["--terminals", str(TERMINALS), "--rounds", str(ROUNDS), "--repeat", str(REPEAT),
                 "--batch-terminals", "100", "--json", str(out)])

    assert code == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert set(report) == {f.name for f in fields(FleetReport)}
    assert report["terminals"] == TERMINALS and report["rounds"] == ROUNDS
    assert report["repeat"] == REPEAT
    # The rounds, then one 100-transaction batch before each of the 2 x REPEAT after-batch scrapes.
    assert report["events"] == TERMINALS * ROUNDS + 100 * 2 * REPEAT
    # One last-transaction gauge and one transaction counter per terminal; round 0 fails
    # every terminal once, so at least one failure counter each, at most one per class.
    assert 3 * TERMINALS <= report["series"] <= 2 * TERMINALS + 6 * TERMINALS
    assert report["exposition_bytes"] > 60 * report["series"]
    assert 0 < report["scrape_gzip_bytes"] < report["exposition_bytes"] // 4
    for name in ("observe_total_s", "observe_median_s", "http_scrape_median_s",
                 "http_scrape_cached_median_s", "http_scrape_identity_median_s",
                 "generate_latest_median_s"):
        assert report[name] > 0, name
    assert 0 < report["rss_bytes"] <= report["peak_rss_bytes"]
    printed = capsys.readouterr().out
    for label in ("series in the exposition", "HTTP scrape (gzip) after a batch",
                  "HTTP scrape (gzip) without new data", "HTTP scrape (identity) after a batch",
                  "peak RSS (VmHWM)", "reference generate_latest", f"{TERMINALS:,}"):
        assert label in printed, label
