"""The store's reads for a team lead's page (acknowledgements by manager), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.alerts.store import AlertStore
from monitor.domain import Manager
from tests.alerts.conftest import _make_failure

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
ANNA = Manager(manager_id="RM-1", name="Anna Berg", email="anna@bank.test")
LI = Manager(manager_id="RM-2", name="Li Wei", email="li@bank.test")


@pytest.fixture
def store(store_location: Path | str) -> Iterator[AlertStore]:
    with AlertStore(store_location) as opened:
        yield opened


def _alert(store: AlertStore, event_id: str, customer: str, manager: Manager, at: datetime, **fields: object) -> str:
    failure = _make_failure(event_id, at, customer_id=customer, manager=manager, **fields)
    [alert_id] = store.record([failure], now=at).new_alert_ids
    return alert_id


def test_acknowledgement_counts_per_manager(store: AlertStore) -> None:
    """Unacknowledged alerts, the oldest's recording time, and each acknowledgement's delay since ``since``."""
    waiting = _alert(store, "e1", "C1", ANNA, NOW - timedelta(hours=3))
    _alert(store, "e2", "C2", ANNA, NOW - timedelta(hours=1))
    quick = _alert(store, "e3", "C3", LI, NOW - timedelta(hours=2))
    store.acknowledge(quick, by="RM-2", via="email", at=NOW - timedelta(hours=2) + timedelta(minutes=7))
    resolved = _alert(store, "e4", "C4", LI, NOW - timedelta(days=9))
    store.acknowledge(resolved, by="RM-2", via="email", at=NOW - timedelta(days=8))
    store.resolve(resolved, by="RM-2", via="api", note=None, outcome="called_client")
    counts = store.acknowledgement_counts(["RM-1", "RM-2", "RM-3"], since=NOW - timedelta(days=7))
    assert counts["RM-1"].unacknowledged == 2
    assert counts["RM-1"].oldest_unacknowledged_at == store.get_alert(waiting).created_at  # type: ignore[union-attr]
    assert counts["RM-1"].acknowledge_seconds == ()
    assert (counts["RM-2"].unacknowledged, counts["RM-2"].acknowledge_seconds) == (0, (420.0,))
    assert counts["RM-3"].unacknowledged == 0 and counts["RM-3"].oldest_unacknowledged_at is None
    assert store.acknowledgement_counts([], since=NOW) == {}
