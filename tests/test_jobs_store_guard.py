"""Scheduled jobs of the service meet an unavailable alert store with one log line, not a traceback per run."""

from __future__ import annotations

import logging

import pytest

from monitor.alerts.store.db import StoreUnavailable
from monitor.jobs import StoreJobGuard


def test_an_outage_is_one_warning_then_one_line_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    """Failing runs of a job log the outage once (not once a run), and the first good run says the store is back."""
    outcome: list[Exception | None] = [StoreUnavailable("down")] * 5 + [None]

    def job() -> None:
        error = outcome.pop(0)
        if error is not None:
            raise error

    guarded = StoreJobGuard().sync("outbox gauge", job)
    with caplog.at_level(logging.INFO, logger="monitor.jobs"):
        for _ in range(6):
            guarded()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [("outbox gauge skipped: the alert store is unavailable (StoreUnavailable: down); "
                      "it runs again at its next interval"), "outbox gauge: the alert store is back"]
    assert not any(r.exc_info for r in caplog.records)


async def test_a_bug_in_a_job_still_reaches_the_scheduler() -> None:
    """An error that is not a store outage propagates (the scheduler logs it with its traceback)."""
    async def job() -> None:
        raise KeyError("not an outage")

    with pytest.raises(KeyError):
        await StoreJobGuard().coroutine("escalation", job)()
