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


def test_a_sample_watch_files_its_kind_so_a_later_failure_of_another_kind_adds_to_it(
    store_location: Path | str,
) -> None:
    """A sample watch's withdrawal stays watched when a purchase failure joins the alert, as a recorded watch's does."""
    failure = sample_failure("ev-1", PARIS_NINE, customer_id="C-1", customer_name="Ada",
                             manager=CLAIRE, outcome="technical", terminal_id="ATM00042")
    purchase = sample_failure("ev-2", PARIS_NINE + timedelta(minutes=1), customer_id="C-1",
                              customer_name="Ada", manager=CLAIRE, outcome="technical",
                              terminal_id="POS00001")
    with AlertStore(store_location) as store:
        [alert_id] = store.record([failure], now=PARIS_NINE).new_alert_ids
        with store._transaction() as conn:
            write_recovery_row(conn, alert_id, failure, "watching")
        store.record([purchase], now=PARIS_NINE, recovery_window_seconds=1800)
        kinds = store.open_watch_kinds(recovered_since=None)
    assert sorted((k.alert_id, k.channel, k.txn_type) for k in kinds) == [
        (alert_id, "ATM", "withdrawal"), (alert_id, "POS", "purchase")]
