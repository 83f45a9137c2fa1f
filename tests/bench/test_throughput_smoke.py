"""Smoke test of the throughput benchmark on a tiny backlog against the session broker.

No timing assertion: only that both phases read the whole topic and the report is complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.throughput import main, percentile
from monitor.pipeline.processor import STAGES
from tests.postgres import PostgresServer

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
    # Decoding shows in-process, or as the wait for the decode child (kafka.decode_processes).
    decoded = stages["decode"] > 0 or report["monitor_breakdown"]["decode (child, awaited)"] > 0
    assert decoded and all(cost >= 0 for cost in stages.values())
    assert report["cpu_seconds"]["main process"] > 0
    [live] = report["live"]
    assert live["target_rate"] == 400 and live["events"] > 0 and live["alerts"] > 0
    assert live["rate"] > 0 and live["batches"] > 0
    assert 0 < live["latency_p50"] <= live["latency_p99"] <= live["latency_max"]
    assert report["scale"] == [] and report["scale_ratio"] is None
    printed = capsys.readouterr().out
    for label in ("bare aiokafka consumer", "whole monitor", "ratio monitor / bare",
                  "live phase at 400/s", "alert latency p50", "alert latency p99",
                  "µs/event by stage"):
        assert label in printed


def test_live_phases_only_and_the_scale_phase(
    kafka_bootstrap: str, postgres: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Two live rates give two live phases; --instances 2 runs the backlog through 1 then 2 processes sharing PostgreSQL."""
    out = tmp_path / "report.json"
    code = main(["--events", "2000", "--bootstrap-servers", kafka_bootstrap, "--batch-max-records", "500",
                 "--live-rate", "300", "600", "--live-seconds", "2", "--instances", "2",
                 "--store-url", postgres.url(), "--json", str(out)])

    assert code == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert [phase["target_rate"] for phase in report["live"]] == [300, 600]
    assert all(phase["events"] > 0 for phase in report["live"])
    assert [run["instances"] for run in report["scale"]] == [1, 2]
    assert all(run["events"] == 2000 and run["rate"] > 0 for run in report["scale"])
    assert report["scale_ratio"] == pytest.approx(report["scale"][1]["rate"] / report["scale"][0]["rate"])
    assert "scale: N instances / one" in capsys.readouterr().out


def test_percentile_is_nearest_rank() -> None:
    """The p50 of 1..100 is 50, the p99 is 99, and no samples give no percentile."""
    values = [float(v) for v in range(100, 0, -1)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([], 0.5) is None
