"""The job table: every job the app schedules is listed there, timed from the settings."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CollectorRegistry

from monitor import jobs
from monitor.app import MonitorApp
from monitor.config import Settings

pytestmark = pytest.mark.usefixtures("clean_environment")  # tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]


def _scheduled(settings: Settings) -> dict[str, object]:
    """Job ID -> trigger of every job the app adds to a (not started) scheduler."""
    monitor = MonitorApp(settings, metrics_registry=CollectorRegistry())
    try:
        scheduler = AsyncIOScheduler(timezone="UTC")
        monitor.schedule(scheduler)
        return {job.id: job.trigger for job in scheduler.get_jobs()}
    finally:
        monitor.store.close()


def test_the_table_lists_every_job_the_app_schedules(tmp_path: Path) -> None:
    """With every optional part on, the app schedules exactly the jobs of JOBS, none twice."""
    scheduled = _scheduled(Settings(alerting={"store_path": tmp_path / "alerts.db"},
                                    health={"terminals_path": tmp_path / "terminals.csv"},
                                    workspace={"enabled": True, "secret": "w" * 32}))
    assert sorted(scheduled) == sorted(job.job_id for job in jobs.JOBS)
    assert len({job.job_id for job in jobs.JOBS}) == len(jobs.JOBS)


def test_intervals_come_from_the_settings(tmp_path: Path) -> None:
    """Each interval job runs at the interval its settings key gives; digests at second 0 of each minute."""
    scheduled = _scheduled(Settings(
        alerting={"store_path": tmp_path / "alerts.db", "escalation_interval_seconds": 41,
                  "summary_interval_seconds": 42, "recovery_interval_seconds": 49},
        registry={"reload_interval_seconds": 43},
        metrics={"store_gauges_interval_seconds": 44, "terminal_impact_interval_seconds": 48},
        health={"terminals_path": tmp_path / "terminals.csv", "evaluate_interval_seconds": 45,
                "terminals_reload_interval_seconds": 46},
        workspace={"enabled": True, "secret": "w" * 32, "purge_interval_seconds": 470},
    ))
    every = {job_id: trigger.interval for job_id, trigger in scheduled.items()
             if isinstance(trigger, IntervalTrigger)}
    assert every == {
        jobs.ESCALATION_JOB: timedelta(seconds=41), jobs.SUMMARIES_JOB: timedelta(seconds=42),
        jobs.REGISTRY_RELOAD_JOB: timedelta(seconds=43), jobs.STORE_GAUGES_JOB: timedelta(seconds=44),
        jobs.EVALUATE_JOB: timedelta(seconds=45), jobs.TERMINAL_REGISTRY_JOB: timedelta(seconds=46),
        jobs.SILENT_DETECTION_JOB: timedelta(seconds=60),  # rules/health.yaml silent.interval_seconds
        jobs.WORKSPACE_PURGE_JOB: timedelta(seconds=470),
        jobs.TERMINAL_IMPACT_JOB: timedelta(seconds=48),
        jobs.RECOVERY_JOB: timedelta(seconds=49),
        jobs.RECOVERY_FOLLOW_UPS_JOB: timedelta(seconds=5),  # fixed
    }
    digests = scheduled[jobs.DIGESTS_JOB]
    assert isinstance(digests, CronTrigger)
    assert {f.name: str(f) for f in digests.fields}["second"] == "0"


def test_the_defaults_are_the_intervals_of_before(tmp_path: Path) -> None:
    """The settings that took over constants keep their values: store gauges 5 s, summaries and terminal reloads 30 s."""
    settings = Settings(alerting={"store_path": tmp_path / "alerts.db"})
    assert settings.metrics.store_gauges_interval_seconds == 5
    assert settings.alerting.summary_interval_seconds == 30
    assert settings.health.terminals_reload_interval_seconds == 30


def test_the_workspace_purge_deletes_expired_sign_ins_through_the_app(tmp_path: Path) -> None:
    """The purge job's runner deletes sign-in links and sessions past their expiry from the app's store."""
    from datetime import UTC, datetime

    monitor = MonitorApp(Settings(alerting={"store_path": tmp_path / "alerts.db"},
                                  workspace={"enabled": True, "secret": "w" * 32}),
                         metrics_registry=CollectorRegistry())
    try:
        scheduler = AsyncIOScheduler(timezone="UTC")
        monitor.schedule(scheduler)
        past = datetime(2026, 1, 1, tzinfo=UTC)
        monitor.store.use_sign_in_token("t-old", "RM-017", expires_at=past, now=past)
        scheduler.get_job(jobs.WORKSPACE_PURGE_JOB).func()
        assert monitor.store.use_sign_in_token("t-old", "RM-017", expires_at=past, now=past)
    finally:
        monitor.store.close()


def test_without_a_terminal_registry_its_reload_is_not_scheduled(tmp_path: Path) -> None:
    """The terminal registry reload runs only when health.terminals_path is set."""
    scheduled = _scheduled(Settings(alerting={"store_path": tmp_path / "alerts.db"}))
    assert jobs.TERMINAL_REGISTRY_JOB not in scheduled
    assert jobs.WORKSPACE_PURGE_JOB not in scheduled  # the workspace is off by default
    assert set(scheduled) < {job.job_id for job in jobs.JOBS}


def test_a_runner_for_a_job_the_table_lacks_is_refused() -> None:
    """A job cannot be scheduled past the table: an unknown ID raises KeyError naming it."""
    with pytest.raises(KeyError, match="nightly-cleanup"):
        jobs.schedule(AsyncIOScheduler(timezone="UTC"), {"nightly-cleanup": lambda: None},
                      jobs.Timing(settings=Settings()))


def test_the_operations_guide_shows_every_job() -> None:
    """docs/operations.md lists each job ID and where its timing is set, so an operator sees what runs when."""
    guide = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for job in jobs.JOBS:
        row = next((line for line in guide.splitlines() if line.startswith(f"| `{job.job_id}` ")), None)
        assert row is not None, job.job_id
        setting = job.every.split()[0]
        assert setting in row, (job.job_id, setting)


@pytest.mark.parametrize("window", [0, None])
def test_no_recovery_window_means_no_watch_and_no_recovery_job(tmp_path: Path,
                                                               window: int | None) -> None:
    """alerting.recovery_window_seconds 0 or null turns the watch off; 30 minutes by default."""
    default = Settings(alerting={"store_path": tmp_path / "a.db"})
    assert default.alerting.recovery_window_seconds == 1800
    settings = Settings(alerting={"store_path": tmp_path / "alerts.db",
                                  "recovery_window_seconds": window})
    monitor = MonitorApp(settings, metrics_registry=CollectorRegistry())
    try:
        assert monitor.recovery is None and monitor.consumer.recovery is None
    finally:
        monitor.store.close()
    scheduled = _scheduled(settings)
    assert jobs.RECOVERY_JOB not in scheduled
    assert jobs.RECOVERY_FOLLOW_UPS_JOB not in scheduled  # nothing is ever decided
