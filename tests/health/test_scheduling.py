"""The silent-detection job on a real AsyncIOScheduler, and its run events counted in a metric."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry

from monitor.health.baseline import learn_baseline
from monitor.health.scheduling import SchedulerJobMetrics
from monitor.health.silent import SilentDetector, SilentRules
from monitor.jobs import schedule_silent_detection
from monitor.testing.fixtures import wait_until


@pytest.fixture
async def scheduler() -> AsyncIterator[AsyncIOScheduler]:
    """A started AsyncIOScheduler on the test's event loop, shut down afterwards."""
    running = AsyncIOScheduler(timezone=UTC)
    running.start()
    yield running
    running.shutdown(wait=False)
    await asyncio.sleep(0)


def count(registry: CollectorRegistry, event: str, job: str = "silent_detection") -> float:
    """The current value of cardmon_scheduler_job_events_total for one job and event."""
    return registry.get_sample_value("cardmon_scheduler_job_events_total",
                                     {"job": job, "event": event}) or 0.0


def busy_detector(rules: SilentRules, now: datetime) -> SilentDetector:
    """A 24/7 UTC terminal that usually makes 60/h and has been quiet since an hour ago."""
    history = pl.DataFrame({
        "terminal_id": ["T1"] * 24 * 7 * 60,
        "occurred_at": [now - timedelta(days=8) + timedelta(minutes=m) for m in range(24 * 7 * 60)],
    }, schema={"terminal_id": pl.String, "occurred_at": pl.Datetime("us", "UTC")})
    return SilentDetector(rules, learn_baseline(history), started_at=now - timedelta(hours=1))


async def test_the_job_reports_silent_terminals_and_counts_executed_runs(
        scheduler: AsyncIOScheduler) -> None:
    """Every run hands the silent IDs to the callback and counts one executed event."""
    registry = CollectorRegistry()
    metrics = SchedulerJobMetrics(registry)
    metrics.attach(scheduler, jobs=("silent_detection",))
    assert registry.get_sample_value("cardmon_scheduler_job_events_total",
                                     {"job": "silent_detection", "event": "missed"}) == 0
    reports: list[set[str]] = []

    async def mark_silent(ids: set[str], at: datetime) -> None:
        reports.append(ids)

    now = datetime.now(UTC)
    detector = busy_detector(SilentRules(interval_seconds=0.1), now)
    schedule_silent_detection(scheduler, detector, mark_silent)
    await wait_until(lambda: count(registry, "executed") >= 3, timeout=10, what="three runs")
    assert reports[0] == {"T1"}
    assert count(registry, "error") == 0


async def test_runs_late_beyond_the_grace_time_are_counted_as_missed(
        scheduler: AsyncIOScheduler) -> None:
    """A loop blocked for 2.5 s makes runs due every 0.2 s more than 1 s late: counted as missed."""
    registry = CollectorRegistry()
    SchedulerJobMetrics(registry).attach(scheduler)
    detector = SilentDetector(SilentRules(interval_seconds=0.2, misfire_grace_seconds=1))
    schedule_silent_detection(scheduler, detector, lambda ids, at: None)
    await wait_until(lambda: count(registry, "executed") >= 1, timeout=10, what="a first run")
    time.sleep(2.5)  # noqa: ASYNC251 (on purpose: blocks the loop as a long synchronous step would)
    await wait_until(lambda: count(registry, "missed") >= 3, timeout=10, what="missed runs")
    await wait_until(lambda: count(registry, "executed") >= 2, timeout=10, what="runs resume")


async def test_a_run_due_while_the_previous_one_runs_is_counted_as_max_instances(
        scheduler: AsyncIOScheduler) -> None:
    """A report that takes 1 s with runs due every 0.2 s skips runs: counted as max_instances."""
    registry = CollectorRegistry()
    SchedulerJobMetrics(registry).attach(scheduler)

    async def slow_report(ids: set[str], at: datetime) -> None:
        await asyncio.sleep(1.0)

    detector = SilentDetector(SilentRules(interval_seconds=0.2))
    schedule_silent_detection(scheduler, detector, slow_report)
    await wait_until(lambda: count(registry, "max_instances") >= 2, timeout=10,
                     what="skipped overlapping runs")
    await wait_until(lambda: count(registry, "executed") >= 1, timeout=10, what="a finished run")


async def test_a_run_that_raises_is_counted_as_error_and_the_job_keeps_running(
        scheduler: AsyncIOScheduler) -> None:
    """A failing report counts error events and the next runs still happen."""
    registry = CollectorRegistry()
    SchedulerJobMetrics(registry).attach(scheduler)

    def broken(ids: set[str], at: datetime) -> None:
        raise RuntimeError("health book unavailable")

    schedule_silent_detection(scheduler, SilentDetector(SilentRules(interval_seconds=0.1)), broken)
    await wait_until(lambda: count(registry, "error") >= 2, timeout=10, what="two failed runs")
    assert count(registry, "executed") == 0
