"""A client's recent alerts and a terminal's recorded failures, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.alerts.store import AlertStore
from monitor.domain import VipFailure

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def test_a_clients_history_holds_their_alerts_of_the_period_newest_first_with_events(
    store_location: Path | str, make_failure: Callable[..., VipFailure]
) -> None:
    """Only the client's alerts whose window started in the period, newest first, each with its failures and state."""
    with AlertStore(store_location) as store:
        old = store.record([make_failure("ev-old", T0 - timedelta(days=100))], now=T0).new_alert_ids
        [first] = store.record([make_failure("ev-1", T0 - timedelta(days=3)),
                                make_failure("ev-2", T0 - timedelta(days=3, minutes=-1))],
                               now=T0).new_alert_ids
        [second] = store.record([make_failure("ev-3", T0 - timedelta(hours=1))], now=T0).new_alert_ids
        store.record([make_failure("ev-other", T0, customer_id="C-2002", customer_name="Grace Hopper")],
                     now=T0)
        store.acknowledge(first, by="RM-017", via="workspace", note=None, at=T0)
        history = store.client_history("C-1001", since=T0 - timedelta(days=90))
    assert old and old[0] not in history.states
    assert [a.alert_id for a in history.alerts] == [second, first]
    assert history.states == {first: "acknowledged", second: "open"}
    assert [e.event_id for e in history.events[first]] == ["ev-1", "ev-2"]
    assert [e.event_id for e in history.events[second]] == ["ev-3"]
    assert all(alert.deliveries is not None for alert in history.alerts)
    assert not history.truncated


def test_an_unknown_client_has_an_empty_history_and_a_naive_start_is_refused(
    store_location: Path | str,
) -> None:
    """A client without alerts reads as empty; a naive start raises ValueError."""
    with AlertStore(store_location) as store:
        empty = store.client_history("C-none", since=T0)
        assert (empty.alerts, empty.states, empty.events) == ((), {}, {})
        with pytest.raises(ValueError, match="naive"):
            store.client_history("C-none", since=T0.replace(tzinfo=None))


def test_terminal_activity_counts_every_clients_failures_in_the_range(
    store_location: Path | str, make_failure: Callable[..., VipFailure]
) -> None:
    """Failures at a terminal in [start, end) are counted with their clients and codes; other terminals and times are not."""
    with AlertStore(store_location) as store:
        store.record([
            make_failure("ev-1", T0, response_code="91", outcome="technical"),
            make_failure("ev-2", T0 + timedelta(minutes=5), customer_id="C-2", response_code="91",
                         outcome="technical"),
            make_failure("ev-3", T0 + timedelta(minutes=9), customer_id="C-3"),
            make_failure("ev-4", T0 + timedelta(minutes=10), customer_id="C-4"),  # at the end: out
            make_failure("ev-5", T0 + timedelta(minutes=1), customer_id="C-5", terminal_id="POS00007"),
            make_failure("ev-6", T0 + timedelta(minutes=2), customer_id="C-6", response_code=None,
                         outcome="timeout"),
        ], now=T0)
        found = store.terminal_activity(["ATM00042", "ATM00042", "ATM99999"], start=T0,
                                        end=T0 + timedelta(minutes=10))
        assert store.terminal_activity([], start=T0, end=T0) == {}
    atm = found["ATM00042"]
    assert (atm.failures, atm.clients) == (4, 4)
    assert atm.response_codes == (("91", 2), ("51", 1), ("timeout", 1))
    assert (atm.first_at, atm.last_at) == (T0, T0 + timedelta(minutes=9))
    assert (found["ATM99999"].failures, found["ATM99999"].clients, found["ATM99999"].first_at) == (0, 0, None)
    assert set(found) == {"ATM00042", "ATM99999"}
