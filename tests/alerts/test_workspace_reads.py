"""The store's reads for the workspace's team and operations pages, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.alerts.store import AlertStore
from monitor.domain import Manager
from monitor.incidents import IncidentChange, IncidentRules
from tests.alerts.conftest import _make_failure

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
ANNA = Manager(manager_id="RM-1", name="Anna Berg", email="anna@bank.test")
LI = Manager(manager_id="RM-2", name="Li Wei", email="li@bank.test")
RULES = IncidentRules.model_validate({"group_wait_seconds": 15, "group_interval_seconds": 300,
                                      "scopes": {"terminal": {"min_failures": 5}}})


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


def test_terminal_failures_count_recent_vip_failures_with_their_open_incident(store: AlertStore) -> None:
    """Terminals of alerts recorded since ``since``: failures, alerts, clients, latest merchant, open incident."""
    _alert(store, "e1", "C1", ANNA, NOW - timedelta(minutes=30), terminal_id="ATM-9")
    _alert(store, "e2", "C2", LI, NOW - timedelta(minutes=20), terminal_id="ATM-9", merchant_id="M-2")
    _alert(store, "e3", "C3", LI, NOW - timedelta(minutes=10), terminal_id="POS-1")
    _alert(store, "e4", "C4", LI, NOW - timedelta(days=30), terminal_id="OLD-1")
    incident = IncidentChange(kind="opened", incident_id="in-atm9", scope="terminal", scope_key="ATM-9",
                              started_at=NOW - timedelta(minutes=5), last_failure_at=NOW - timedelta(minutes=5),
                              failures=5, cards=5, terminals=1)
    failure = replace(_make_failure("e5", NOW - timedelta(minutes=5), customer_id="C1", manager=ANNA,
                                    terminal_id="ATM-9"), incident_id="in-atm9")
    store.record([failure], now=NOW - timedelta(minutes=5), incidents=[incident], incident_rules=RULES)
    found = store.terminal_failures(since=NOW - timedelta(days=7))
    assert [(t.terminal_id, t.failures, t.alerts, t.clients, t.merchant_id, t.open_incident_id)
            for t in found] == [("ATM-9", 3, 3, 2, "BNKPARIS0001", "in-atm9"),  # C1 twice, in two windows
                                ("POS-1", 1, 1, 1, "BNKPARIS0001", None)]
    assert found[0].last_failure_at == NOW - timedelta(minutes=5)
    assert len(store.terminal_failures(since=NOW - timedelta(days=7), limit=1)) == 1
    with pytest.raises(ValueError, match="limit"):
        store.terminal_failures(since=NOW, limit=0)
