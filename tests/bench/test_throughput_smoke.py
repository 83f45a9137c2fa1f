"""Smoke test of the throughput benchmark on a tiny backlog against the session broker.

No timing assertion: only that both phases read the whole topic and the report is complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.throughput import main, percentile
from monitor.pipeline.processor import STAGES

EVENTS = 3_000


def test_benchmark_reads_the_topic_twice_and_reports_rates_ratio_and_latency(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Both consumers read exactly the N events, and the printed table and JSON report carry rates, ratio, alerts and latency percentiles."""
    out = tmp_path / "report.json"
    code = main(["--events", str(EVENTS), "--bootstrap-servers", kafka_bootstrap,
                 "--batch-max-records", "500", "--live-rate", "400", "--live-seconds", "4",
                 "--json", str(out)])

    assert code == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["events"] == EVENTS
    assert report["bare_consumed"] == EVENTS
    assert report["monitor_consumed"] == EVENTS
    assert report["bare_rate"] > 0 and report["monitor_rate"] > 0
    assert report["ratio"] == pytest.approx(report["monitor_rate"] / report["bare_rate"])
    assert report["alerts_stored"] > 0  # the demo faults make VIP failures
    assert set(report["monitor_breakdown"]) >= {"process", "alert store", "commit",
                                                "getmany (fetch and wait)"}
    stages = report["stage_us_per_event"]  # every stage's cost per event, so a regression shows
    assert list(stages) == [*STAGES, "store", "commit"]
    assert stages["decode"] > 0 and all(cost >= 0 for cost in stages.values())
    assert report["live_events"] > 0 and report["live_alerts"] > 0
    assert 0 < report["latency_p50"] <= report["latency_p99"] <= report["latency_max"]
    printed = capsys.readouterr().out
    for label in ("bare aiokafka consumer", "whole monitor", "ratio monitor / bare",
                  "alert latency p50", "alert latency p99", "µs/event by stage"):
        assert label in printed


def test_percentile_is_nearest_rank() -> None:
    """The p50 of 1..100 is 50, the p99 is 99, and no samples give no percentile."""
    values = [float(v) for v in range(100, 0, -1)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([], 0.5) is None
