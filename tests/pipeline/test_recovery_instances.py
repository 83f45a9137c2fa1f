"""Two instances on one PostgreSQL store: one decision, the earliest approval."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from monitor.alerts.store import AlertStore
from monitor.alerts.store.fleet_counts import FleetCounts
from monitor.domain import Manager, VipFailure
from monitor.pipeline.recovery import RecoveryWatch
from tests.pipeline.recovery_helpers import approval_frame, withdrawal_failure
from tests.postgres import PostgresServer

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
WINDOW = 1800
MANAGER = Manager(manager_id="RM-1", name="Paul Durand", email="paul@bank.example")
_US = 1_000_000


def _failure(customer_id: str) -> VipFailure:
    """A failed ATM withdrawal of ``customer_id`` at T0."""
    return withdrawal_failure(f"f-{customer_id}", T0, customer_id=customer_id, manager=MANAGER,
                              merchant_id=None)


def _approval(event_id: str, customer_id: str, minutes: float) -> pl.DataFrame:
    """One approved ATM withdrawal of ``customer_id``, ``minutes`` after T0, at ``T-{event_id}``."""
    return approval_frame((event_id, T0 + timedelta(minutes=minutes), customer_id, "ATM",
                           f"T-{event_id}"))


@pytest.fixture
def url(postgres: PostgresServer) -> Iterator[str]:
    """A new PostgreSQL store (its schema created) for one test."""
    location = postgres.new_store_url()
    with AlertStore(location):
        pass
    yield location


def test_an_approval_buffered_on_one_instance_recovers_a_failure_recorded_by_another(
    url: str,
) -> None:
    """B reads the approval before A records the failure; B's next pass recovers it."""
    with AlertStore(url) as a_store, AlertStore(url) as b_store:
        a = RecoveryWatch(a_store, watermark=lambda: T0, lateness_seconds=10)
        b = RecoveryWatch(b_store, watermark=lambda: T0, lateness_seconds=10)
        assert b.after_batch(_approval("ok-3", "C-1", 3)).recovered == ()
        a_store.record([_failure("C-1")], recovery_window_seconds=WINDOW)
        assert a.after_batch(_approval("ok-9", "C-1", 9)).recovered != ()  # A: a later one first
        assert b.decide().recovered == ()  # B's earlier approval replaces it: no second decision
        [recovery] = a_store.recoveries_of([x.alert_id for x in a_store.list_alerts()]).values()
    assert (recovery.status, recovery.recovery_event_id) == ("recovered", "ok-3")


def test_with_scale_out_a_watch_is_abandoned_only_when_every_partition_passed_its_deadline(
    url: str,
) -> None:
    """The fleet watermark waits for the lagging partition, whoever reads it."""
    counts = FleetCounts(url, "tx")
    deadline_us = int((T0 + timedelta(seconds=WINDOW)).timestamp() * _US)
    try:
        with AlertStore(url) as store:

            def fleet() -> datetime | None:
                return store.fleet_watermark("tx", lateness_seconds=10, stalled_seconds=60)

            watch = RecoveryWatch(store, watermark=fleet, lateness_seconds=10)
            store.record([_failure("C-1")], recovery_window_seconds=WINDOW)
            assert fleet() is None  # no progress written yet
            for partition, latest in ((0, deadline_us + 60 * _US), (1, deadline_us - 60 * _US)):
                counts.flush(
                    partition,
                    partitions=2,
                    owner="a",
                    latest_us=latest,
                    caught_up=False,
                    through=None,
                    partials=[],
                    vips=[],
                )
            assert watch.decide().abandoned == ()  # partition 1 is still before the deadline
            counts.flush(
                1,
                partitions=2,
                owner="b",
                latest_us=deadline_us + 30 * _US,
                caught_up=False,
                through=None,
                partials=[],
                vips=[],
            )
            decided = watch.decide()
    finally:
        counts.close()
    assert [r.customer_id for r in decided.abandoned] == ["C-1"]
