"""The shared sample builders write rows the store reads and decides like its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from monitor.alerts.store import AlertStore
from monitor.domain import Manager
from monitor.testing.samples import sample_failure, write_recovery_row

CLAIRE = Manager(manager_id="RM-017", name="Claire Martin", email="claire@bank.example")
# 09:00 in Paris (CET, UTC+1) is 08:00 UTC.
PARIS_NINE = datetime(2026, 12, 7, 9, 0, tzinfo=ZoneInfo("Europe/Paris"))


def test_a_sample_watch_at_a_paris_time_is_stored_in_utc_and_abandoned_after_its_deadline(
    store_location: Path | str,
) -> None:
    """A failure given in another zone writes the store's UTC times, so event time past the deadline abandons it."""
    failure = sample_failure("ev-1", PARIS_NINE, customer_id="C-1", customer_name="Ada",
                             manager=CLAIRE, outcome="technical", terminal_id="ATM00042")
    with AlertStore(store_location) as store:
        [alert_id] = store.record([failure], now=PARIS_NINE).new_alert_ids
        with store._transaction() as conn:
            write_recovery_row(conn, alert_id, failure, "watching")
        after_deadline = PARIS_NINE.astimezone(UTC) + timedelta(minutes=31)
        abandoned = store.abandon_watches(after_deadline, now=after_deadline)
        recovery = store.recovery_of(alert_id)
    assert [r.alert_id for r in abandoned] == [alert_id]
    assert recovery is not None and recovery.window_ends_at.utcoffset() == timedelta(0)
