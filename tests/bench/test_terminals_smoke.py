"""Smoke test of the fleet-scale benchmark on 2,000 terminals and 6 one-minute rounds.

No timing assertion: only that it runs the metrics and the terminal health service,
serves every series, runs the loop phase and reports every field.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from bench.terminals import FleetReport, main

TERMINALS = 2_000
ROUNDS = 6
REPEAT = 2
EXTRA = 100
STEPS = ("setup", "metrics", "book", "detector", "evaluate_book", "evaluate_detector", "scrapes")


def _run(tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "fleet.json"
    code = main(["--terminals", str(TERMINALS), "--rounds", str(ROUNDS), "--repeat", str(REPEAT),
                 "--batch-terminals", str(EXTRA), "--json", str(out), *extra])
    assert code == 0
    report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    assert set(report) == {f.name for f in fields(FleetReport)}
    assert report["terminals"] == TERMINALS and report["rounds"] == ROUNDS
    assert report["repeat"] == REPEAT
    # The rounds, then one 100-transaction batch before each of the 2 x REPEAT after-batch scrapes.
    assert report["events"] == TERMINALS * ROUNDS + EXTRA * 2 * REPEAT
    return report


def test_benchmark_feeds_health_and_reports_time_memory_and_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A 2,000-terminal run feeds metrics and health, and prints and writes every FleetReport field."""
    report = _run(tmp_path)

    assert report["health"] is True
    # Per terminal: one last-transaction gauge, one transaction counter, one health state,
    # and at most one failure counter per terminal-side class (technical, terminal, card);
    # plus the fleet-level families (a few hundred series at most).
    assert 3 * TERMINALS < report["series"] <= 6 * TERMINALS + 1_000
    assert report["exposition_bytes"] > 60 * report["series"]
    assert 0 < report["scrape_gzip_bytes"] < report["exposition_bytes"] // 4
    for name in ("observe_metrics_steady_s", "observe_book_steady_s", "observe_detector_steady_s",
                 "observe_metrics_total_s", "observe_health_total_s", "evaluate_book_steady_s",
                 "evaluate_detector_steady_s", "http_scrape_median_s", "http_scrape_cached_median_s",
                 "http_scrape_identity_median_s", "generate_latest_median_s"):
        assert report[name] > 0, name
    assert report["evaluate_book_steady_s"] <= report["evaluate_book_max_s"]
    assert report["evaluate_detector_steady_s"] <= report["evaluate_detector_max_s"]
    # Every terminal has a health state; none is silent (all trade every minute).
    by_state = report["terminals_by_state"]
    assert set(by_state) == {"ok", "degraded", "failing", "silent", "offline"}
    assert sum(by_state.values()) == TERMINALS and by_state["silent"] == 0
    # 5 one-minute buckets of the 5 min window hold the last 5 minutes of every terminal at
    # most; the 1 h window's 5-minute buckets hold the 6 rounds in at most 2 buckets each.
    rows = report["window_rows"]
    assert set(rows) == {"5m", "1h"}
    assert TERMINALS <= rows["5m"] <= 5 * TERMINALS and TERMINALS <= rows["1h"] <= 2 * TERMINALS
    for name in ("windows_bytes", "snapshot_bytes", "baseline_bytes", "registry_bytes"):
        assert report[name] > 0, name
    # The baseline: 168 Float32 hours per terminal.
    assert report["baseline_bytes"] >= TERMINALS * 168 * 4
    assert 0 < report["rss_start_bytes"] and 0 < report["rss_bytes"] <= report["peak_rss_bytes"]
    assert set(report["peak_rss_by_step"]) == {*STEPS, "loop"}
    assert max(report["peak_rss_by_step"].values()) == report["peak_rss_bytes"]
    # The loop phase: the probe ran throughout, live batches were processed, every job ran.
    loop = report["loop"]
    assert loop["cycles"] == 3 and loop["probe_samples"] > 10 and loop["live_events"] > 0
    assert 0 <= loop["stall_jobs_max_s"] <= loop["stall_max_s"] and loop["stall_p99_s"] <= loop["stall_max_s"]
    for name in ("evaluate_job_median_s", "detect_job_median_s", "scrape_median_s", "batch_latency_p50_s"):
        assert loop[name] > 0, name
    assert loop["batch_latency_p50_s"] <= loop["batch_latency_p99_s"]
    printed = capsys.readouterr().out
    for label in ("observe: health book", "observe: silent detector", "evaluate: health book",
                  "evaluate: silent detector", "terminals by health state", "series in the exposition",
                  "HTTP scrape (gzip) after a batch", "HTTP scrape (gzip) without new data",
                  "HTTP scrape (identity) after a batch", "peak RSS (VmHWM)", "peak RSS during each step",
                  "reference generate_latest", "loop: longest stall during a job or a scrape",
                  "loop: same while an evaluation runs", f"{TERMINALS:,}"):
        assert label in printed, label


def test_metrics_only_run_has_no_health_state(tmp_path: Path) -> None:
    """With --metrics-only the health service is left out: no health series, states or windows."""
    report = _run(tmp_path, "--metrics-only")

    assert report["health"] is False
    # Per terminal: last time, transactions, and at most three failure classes.
    assert 2 * TERMINALS < report["series"] <= 5 * TERMINALS
    assert report["terminals_by_state"] == {} and report["window_rows"] == {}
    assert report["observe_book_steady_s"] == 0 and report["evaluate_book_steady_s"] == 0
    assert report["observe_metrics_steady_s"] > 0
    assert report["loop"] is None
