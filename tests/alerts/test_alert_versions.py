"""``AlertStore.alert_versions``: the cheap read the workspace's live updates poll.

Real parts: a real SQLite or PostgreSQL alert store (``store_location``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.alerts.store import AlertStore, RecoveryMatch
from monitor.domain import Manager, VipFailure

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
JONAS = Manager(manager_id="RM-042", name="Jonas Weber", email="jonas.weber@bank.example")


def test_a_version_changes_with_the_state_and_with_new_events_only(
        store_location: Path | str, make_failure: Callable[..., VipFailure]) -> None:
    """Acknowledging, resolving or adding an event changes that alert's version; other alerts keep theirs."""
    with AlertStore(store_location) as store:
        [ada] = store.record([make_failure("ev-1", T0)], now=T0).new_alert_ids
        [grace] = store.record([make_failure("ev-2", T0, customer_id="C-1002")], now=T0).new_alert_ids
        first = store.alert_versions("RM-017")
        assert set(first) == {ada, grace}
        assert first[ada].startswith("open|1|")

        store.record([make_failure("ev-3", T0 + timedelta(minutes=1))], now=T0 + timedelta(minutes=1))
        second = store.alert_versions("RM-017")
        assert second[ada] != first[ada] and second[ada].startswith("open|2|")
        assert second[grace] == first[grace]

        store.acknowledge(ada, by="RM-017", via="link")
        third = store.alert_versions("RM-017")
        assert third[ada].startswith("acknowledged|") and third[grace] == first[grace]
        store.resolve(ada, by="RM-017", via="api", note=None, outcome="called_client")
        assert store.alert_versions("RM-017")[ada].startswith("resolved|")


def test_versions_are_one_managers_newest_alerts(
        store_location: Path | str, make_failure: Callable[..., VipFailure]) -> None:
    """Only the manager's alerts, the newest ``limit`` of them; a bad limit is refused."""
    with AlertStore(store_location) as store:
        mine = [store.record([make_failure(f"ev-{n}", T0, customer_id=f"C-{n:04d}")],
                             now=T0 + timedelta(seconds=n)).new_alert_ids[0] for n in range(3)]
        [his] = store.record([make_failure("ev-9", T0, customer_id="C-0009", manager=JONAS)],
                             now=T0).new_alert_ids
        assert set(store.alert_versions("RM-017")) == set(mine)
        assert set(store.alert_versions("RM-042")) == {his}
        assert set(store.alert_versions("RM-017", limit=2)) == set(mine[1:])
        assert store.alert_versions("RM-999") == {}
        for bad in (0, 501):
            with pytest.raises(ValueError, match="limit"):
                store.alert_versions("RM-017", limit=bad)


def test_a_version_changes_when_the_recovery_watch_is_decided(
        store_location: Path | str, make_failure: Callable[..., VipFailure]) -> None:
    """Recovered or abandoned changes that alert's version (the list's badge changes); watching alone does not."""
    with AlertStore(store_location) as store:
        [ada] = store.record([make_failure("ev-1", T0)], now=T0,
                             recovery_window_seconds=1800).new_alert_ids
        [grace] = store.record([make_failure("ev-2", T0, customer_id="C-1002")], now=T0,
                               recovery_window_seconds=1800).new_alert_ids
        first = store.alert_versions("RM-017")
        assert first[ada].endswith("|watching")
        store.mark_recovered([RecoveryMatch(alert_id=ada, recovered_at=T0 + timedelta(minutes=4),
                                            event_id="ok-1", terminal_id="ATM-0042")],
                             now=T0 + timedelta(minutes=4))
        second = store.alert_versions("RM-017")
        assert second[ada] != first[ada] and second[ada].endswith("|recovered")
        assert second[grace] == first[grace]
        store.abandon_watches(T0 + timedelta(minutes=31), now=T0 + timedelta(minutes=31))
        third = store.alert_versions("RM-017")
        assert third[grace] != first[grace] and third[grace].endswith("|abandoned")
        assert third[ada] == second[ada]
