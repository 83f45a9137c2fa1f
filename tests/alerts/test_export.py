"""JSON Lines export of the stored alerts."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.alerts.export import export_jsonl
from monitor.alerts.store import AlertStore
from monitor.domain import VipFailure

T0 = datetime(2024, 5, 6, 12, 1, 30, tzinfo=UTC)
EVENT_FIELDS = {"event_id", "occurred_at", "channel", "terminal_id", "merchant_id", "txn_type",
                "amount_minor", "currency", "response_code", "outcome"}
ALERT_FIELDS = {"alert_id", "customer_id", "tier", "manager_id", "severity", "window_start",
                "window_end", "status", "deliveries", "events"}


def test_export_writes_one_object_per_alert_with_canonical_fields(
    store_location: Path | str, make_failure: Callable[..., VipFailure]
) -> None:
    """Each alert is one JSON line with its deliveries and events in canonical contract fields."""
    with AlertStore(store_location) as store:
        store.record([
            make_failure("ev-0", T0),
            make_failure("ev-1", T0 + timedelta(minutes=2), response_code=None, status="timeout",
                         outcome="technical", response_meaning="No response (timeout)"),
            make_failure("ev-2", T0 + timedelta(minutes=40), currency="JPY", amount_minor=5000),
        ], sinks=["jsonl"])
        out = io.StringIO()
        assert export_jsonl(store, out) == 2
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert ALERT_FIELDS <= first.keys()
    assert (first["customer_id"], first["tier"], first["manager_id"]) == ("C-1001", "private", "RM-017")
    assert (first["window_start"], first["window_end"]) == (
        "2024-05-06T12:00:00+00:00", "2024-05-06T12:10:00+00:00")
    assert first["status"] == "pending"
    assert [(d["channel"], d["status"], d["attempts"]) for d in first["deliveries"]] == [
        ("email", "pending", 0), ("jsonl", "pending", 0)]
    assert [e["event_id"] for e in first["events"]] == ["ev-0", "ev-1"]
    event = first["events"][0]
    assert EVENT_FIELDS <= event.keys()
    assert event["occurred_at"] == "2024-05-06T12:01:30+00:00"
    assert (event["amount_minor"], event["currency"], event["response_code"]) == (13409, "USD", "51")
    assert (first["events"][1]["response_code"], first["events"][1]["outcome"]) == (None, "technical")
    assert (second["events"][0]["amount_minor"], second["events"][0]["currency"]) == (5000, "JPY")
    assert "claire.martin@bank.example" not in out.getvalue()


def test_export_of_an_empty_store_writes_nothing(store_location: Path | str) -> None:
    """An empty store exports zero lines."""
    with AlertStore(store_location) as store:
        out = io.StringIO()
        assert export_jsonl(store, out) == 0
    assert out.getvalue() == ""


def test_export_carries_time_to_acknowledge_and_to_first_contact(
    store_location: Path | str, make_failure: Callable[..., VipFailure]
) -> None:
    """Seconds from recording to the acknowledgement and to a resolution that reached the client; null before and for a note alone."""
    recorded = T0 + timedelta(minutes=1)
    with AlertStore(store_location) as store:
        [contacted, noted, waiting] = store.record(
            [make_failure("ev-1", T0), make_failure("ev-2", T0, customer_id="C-2"),
             make_failure("ev-3", T0, customer_id="C-3")], now=recorded).new_alert_ids
        for alert_id in (contacted, noted):
            store.acknowledge(alert_id, by="RM-017", via="workspace", at=recorded + timedelta(minutes=4))
        store.resolve(contacted, by="RM-017", via="workspace", note=None, outcome="called_client",
                      at=recorded + timedelta(minutes=20))
        store.resolve(noted, by="RM-017", via="cli", note="nothing to do", at=recorded + timedelta(minutes=30))
        out = io.StringIO()
        export_jsonl(store, out)
    records = {r["alert_id"]: r for r in map(json.loads, out.getvalue().splitlines())}
    assert (records[contacted]["time_to_acknowledge_seconds"],
            records[contacted]["time_to_first_contact_seconds"]) == (240.0, 1200.0)
    assert (records[noted]["time_to_acknowledge_seconds"],
            records[noted]["time_to_first_contact_seconds"]) == (240.0, None)
    assert (records[waiting]["time_to_acknowledge_seconds"],
            records[waiting]["time_to_first_contact_seconds"]) == (None, None)


def test_export_carries_each_alerts_recovery(
    store_location: Path | str, make_failure: Callable[..., VipFailure]
) -> None:
    """An abandoned watch exports its status and window's end; no watch exports null."""
    with AlertStore(store_location) as store:
        [watched] = store.record([make_failure("ev-1", T0)],
                                 recovery_window_seconds=1800).new_alert_ids
        [plain] = store.record([make_failure("ev-2", T0, customer_id="C-2")]).new_alert_ids
        store.abandon_watches(T0 + timedelta(hours=1), now=T0 + timedelta(hours=1))
        out = io.StringIO()
        export_jsonl(store, out)
    records = {r["alert_id"]: r for r in map(json.loads, out.getvalue().splitlines())}
    assert records[plain]["recovery"] is None
    assert records[watched]["recovery"] == {
        "status": "abandoned", "window_ends_at": (T0 + timedelta(seconds=1800)).isoformat(),
        "recovered_at": None, "seconds_to_recovery": None, "terminal_id": None,
        "merchant_id": None, "channel": None, "txn_type": None, "same_terminal": None}
