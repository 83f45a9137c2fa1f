"""Store writes that isolate the VIP failures the database refuses, by bisection."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.alerts.store import AlertStore
from monitor.domain import AlertEvent, Manager, VipFailure
from monitor.incidents import IncidentChange
from monitor.pipeline.recorder import record_isolating

MANAGER = Manager(manager_id="M-1", name="Paul Durand", email="paul@bank.test")
AT = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)


def _failure(n: int, terminal_id: str, incident_id: str | None = None) -> VipFailure:
    event = AlertEvent(event_id=f"e-{n}", occurred_at=AT, channel="ATM", terminal_id=terminal_id,
                       merchant_id=None, txn_type="withdrawal", amount_minor=2000, currency="EUR",
                       response_code="91", outcome="technical", response_meaning="Issuer unavailable",
                       card_ref="tok_1")
    return VipFailure(event=event, customer_id=f"C-{n}", customer_name=f"Client {n}", tier="private",
                      manager=MANAGER, severity="high", suggested_action="Call the client.",
                      incident_id=incident_id)


def _stored(store: AlertStore) -> list[str]:
    return sorted(e.event_id for a in store.list_alerts() for e in store.alert_events(a.alert_id))


async def test_two_refused_failures_of_sixteen_are_found_and_the_rest_stored(tmp_path: Path) -> None:
    """A SQLite trigger refuses two terminal IDs: exactly their two messages are rejected, 14 stored, in few writes."""
    store = AlertStore(tmp_path / "alerts.db")
    with sqlite3.connect(tmp_path / "alerts.db") as conn:
        conn.execute("""CREATE TRIGGER quarantine BEFORE INSERT ON alert_events
                        WHEN NEW.terminal_id IN ('ATMBAD01', 'ATMBAD02')
                        BEGIN SELECT RAISE(ABORT, 'quarantined terminal'); END""")
    failures = [_failure(n, {3: "ATMBAD01", 12: "ATMBAD02"}.get(n, f"ATM{n:05d}")) for n in range(16)]
    indices = [100 + n for n in range(16)]  # positions of their messages in the batch
    writes = 0

    async def write(batch: list[VipFailure], incidents: list[IncidentChange]) -> None:
        nonlocal writes
        writes += 1
        await asyncio.to_thread(store.record, batch, incidents=incidents)

    try:
        rejections = await record_isolating(write, failures, indices, [])
        assert [(r.index, r.reason) for r in rejections] == [(103, "store_rejected"), (112, "store_rejected")]
        assert all("IntegrityError" in r.detail for r in rejections)
        assert _stored(store) == sorted(f"e-{n}" for n in range(16) if n not in (3, 12))
        assert writes <= 1 + 2 * 2 * 4, "about k·log2(n) writes, not one per failure"
    finally:
        store.close()


async def test_one_write_when_nothing_is_refused() -> None:
    """The common case costs one write and no rejection."""
    calls: list[int] = []

    async def write(batch: list[VipFailure], incidents: list[IncidentChange]) -> None:
        calls.append(len(batch))

    assert await record_isolating(write, [_failure(1, "ATM1"), _failure(2, "ATM2")], [0, 1], []) == []
    assert calls == [2]


async def test_an_error_not_caused_by_content_is_raised() -> None:
    """A lock or connection error is not isolated by bisection: it comes out (the batch is not committed)."""
    async def write(batch: list[VipFailure], incidents: list[IncidentChange]) -> None:
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError):
        await record_isolating(write, [_failure(1, "ATM1")], [0], [])


async def test_refused_incident_changes_are_dropped_and_the_alerts_go_out_alone() -> None:
    """The store refuses the incident changes themselves: failures are stored without incident links."""
    change = IncidentChange(kind="opened", incident_id="in-1", scope="terminal", scope_key="ATM1",
                            started_at=AT, last_failure_at=AT, failures=5, cards=5, terminals=1)
    stored: list[Any] = []

    async def write(batch: list[VipFailure], incidents: list[IncidentChange]) -> None:
        if incidents:
            raise sqlite3.IntegrityError("CHECK constraint failed: scope_key")
        stored.extend(batch)

    rejections = await record_isolating(write, [_failure(1, "ATM1", "in-1"), _failure(2, "ATM1", "in-1")],
                                        [0, 1], [change])
    assert rejections == []
    assert [(f.event.event_id, f.incident_id) for f in stored] == [("e-1", None), ("e-2", None)]
