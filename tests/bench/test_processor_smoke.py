"""Smoke test of the processor benchmark: it runs and reports every stage (not a timed test)."""

from __future__ import annotations

from bench.processor import format_report, run
from monitor.pipeline.processor import STAGES


def test_processor_bench_reports_every_stage() -> None:
    """A small run processes every event, finds VIP failures and prints each stage's cost."""
    report = run(events=4_000, batch=1_000)
    assert report.events == 4_000
    assert report.wall_seconds > 0 and report.thread_cpu_seconds > 0
    assert report.failures > 0
    assert set(report.stage_us_per_event) == set(STAGES)
    text = format_report(report)
    assert "µs/event by stage" in text and "decode" in text
