"""The recovery watch's rows in the alert store: written with the alert, decided once, read back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.alerts.store import AlertStore, RecoveryMatch
from monitor.domain import VipFailure

T0 = datetime(2024, 5, 6, 12, 1, 30, tzinfo=UTC)
NOW = datetime(2024, 5, 6, 12, 5, tzinfo=UTC)
WINDOW = 1800


def _match(
    alert_id: str, minutes: float, event_id: str = "ok-1", terminal_id: str = "ATM00077"
) -> RecoveryMatch:
    return RecoveryMatch(
        alert_id=alert_id,
        recovered_at=T0 + timedelta(minutes=minutes),
        event_id=event_id,
        terminal_id=terminal_id,
        merchant_id="BNKPARIS0002",
    )


def test_recording_a_failure_starts_its_alerts_watch(
    store_location: Path | str, make_failure: Callable[..., VipFailure]
) -> None:
    """A new alert is watched: its kind, first terminal, deadline = last failure + window."""
    with AlertStore(store_location) as store:
        [alert_id] = store.record(
            [make_failure("ev-1", T0)], now=NOW, recovery_window_seconds=WINDOW
        ).new_alert_ids
        store.record(
            [make_failure("ev-2", T0 + timedelta(minutes=2), terminal_id="ATM00043")],
            now=NOW,
            recovery_window_seconds=WINDOW,
        )
        recovery = store.recovery_of(alert_id)
    assert recovery is not None
    assert (recovery.status, recovery.channel, recovery.txn_type, recovery.outcome) == (
        "watching",
        "ATM",
        "withdrawal",
        "customer",
    )
    assert recovery.failed_terminal_id == "ATM00042"
    assert (recovery.first_failed_at, recovery.last_failed_at) == (T0, T0 + timedelta(minutes=2))
    assert recovery.window_ends_at == T0 + timedelta(minutes=2, seconds=WINDOW)
    assert recovery.seconds_to_recovery is None and recovery.same_terminal is None


def test_every_kind_that_failed_is_watched_and_the_row_ignores_recording_order(
    store_location: Path | str, make_failure: Callable[..., VipFailure]
) -> None:
    """A purchase and a withdrawal failing in one alert are both watched; either recording order gives the same row."""
    rows = []
    with AlertStore(store_location) as store:
        for client, reverse in (("C-1001", False), ("C-1002", True)):
            purchase = make_failure(f"ev-{client}-1", T0, customer_id=client, channel="POS",
                                    txn_type="purchase", terminal_id="POS00001")
            withdrawal = make_failure(f"ev-{client}-2", T0 + timedelta(minutes=3), customer_id=client)
            order = [withdrawal, purchase] if reverse else [purchase, withdrawal]
            alert_ids = {alert_id for failure in order for alert_id in
                         store.record([failure], now=NOW, recovery_window_seconds=WINDOW).new_alert_ids}
            [alert_id] = alert_ids
            recovery = store.recovery_of(alert_id)
            assert recovery is not None
            rows.append(((recovery.channel, recovery.txn_type, recovery.outcome,
                          recovery.failed_terminal_id, recovery.first_failed_at,
                          recovery.last_failed_at, recovery.window_ends_at),
                         [kind[1:] for kind in store.recovery_kinds([alert_id])]))
    assert rows[0] == rows[1]
    assert rows[0][0] == ("POS", "purchase", "customer", "POS00001", T0, T0 + timedelta(minutes=3),
                          T0 + timedelta(minutes=3, seconds=WINDOW))
    assert rows[0][1] == [("ATM", "withdrawal", T0 + timedelta(minutes=3), "ATM00042"),
                          ("POS", "purchase", T0, "POS00001")]


def test_no_window_means_no_watch_and_late_alerts_are_watched(
    store_location: Path | str, make_failure: Callable[..., VipFailure]
) -> None:
    """Without a window no row is written; a late (stale) alert is watched like any other."""
    with AlertStore(store_location) as store:
        [plain] = store.record([make_failure("ev-1", T0)], now=NOW).new_alert_ids
        late = store.record(
            [make_failure("ev-2", T0, customer_id="C-2")],
            now=T0 + timedelta(hours=3),
            stale_after_seconds=1800,
            recovery_window_seconds=WINDOW,
        )
        assert late.late_alert_ids
        assert store.recovery_of(plain) is None
        found = store.recoveries_of([plain, *late.late_alert_ids])
    assert list(found) == list(late.late_alert_ids)
    assert found[late.late_alert_ids[0]].status == "watching"


def test_the_earliest_approval_wins_and_only_the_first_transition_is_a_decision(
    store_location: Path | str, make_failure: Callable[..., VipFailure]
) -> None:
    """The earliest approval wins, and only the first transition is a decision."""
    with AlertStore(store_location) as store:
        [alert_id] = store.record(
            [make_failure("ev-1", T0)], now=NOW, recovery_window_seconds=WINDOW
        ).new_alert_ids
        first = store.mark_recovered([_match(alert_id, 5, "ok-5")], now=NOW)
        assert [r.alert_id for r in first] == [alert_id]
        assert store.mark_recovered([_match(alert_id, 9, "ok-9")], now=NOW) == []
        assert (
            store.mark_recovered([_match(alert_id, 3, "ok-3", terminal_id="ATM00042")], now=NOW)
            == []
        )
        recovery = store.recovery_of(alert_id)
    assert recovery is not None
    assert (recovery.status, recovery.recovery_event_id, recovery.seconds_to_recovery) == (
        "recovered",
        "ok-3",
        180.0,
    )
    assert recovery.same_terminal is True and recovery.decided_at == NOW
    assert recovery.merchant_id == "BNKPARIS0002"


def test_a_watch_is_abandoned_once_event_time_passes_its_deadline(
    store_location: Path | str, make_failure: Callable[..., VipFailure]
) -> None:
    """Abandoned once the watermark passes the deadline, for good; recovered ones stay."""
    with AlertStore(store_location) as store:
        [quiet, back] = store.record(
            [make_failure("ev-1", T0), make_failure("ev-2", T0, customer_id="C-2")],
            now=NOW,
            recovery_window_seconds=WINDOW,
        ).new_alert_ids
        store.mark_recovered([_match(back, 4)], now=NOW)
        deadline = T0 + timedelta(seconds=WINDOW)
        assert store.abandon_watches(deadline, now=NOW) == []
        abandoned = store.abandon_watches(deadline + timedelta(seconds=1), now=NOW)
        assert [r.alert_id for r in abandoned] == [quiet]
        assert store.mark_recovered([_match(quiet, 10)], now=NOW) == []
        assert store.watching_recoveries() == []
        assert store.recovery_of(quiet).status == "abandoned"  # type: ignore[union-attr]
        assert store.recovery_of(back).status == "recovered"  # type: ignore[union-attr]
