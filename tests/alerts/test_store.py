"""The alert store: grouping, idempotent replays, the outbox and durability."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from monitor.alerts.store import AlertStore, window_start_for
from monitor.alerts.store.schema import SCHEMA_VERSION
from monitor.domain import Manager, VipFailure
from monitor.ids import alert_id_for

T0 = datetime(2024, 5, 6, 12, 1, 30, tzinfo=UTC)
MakeFailure = Callable[..., VipFailure]


def test_window_start_is_aligned_to_the_epoch_in_event_time() -> None:
    """An event's window starts at the last multiple of the window length since the epoch."""
    paris = datetime(2024, 5, 6, 14, 9, 59, tzinfo=ZoneInfo("Europe/Paris"))  # 12:09:59 UTC
    assert window_start_for(paris) == datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
    assert window_start_for(T0, 3600) == datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        window_start_for(datetime(2024, 5, 6, 12, 0))


def test_alert_id_depends_only_on_client_and_window() -> None:
    """The same client and window always give the same ID; another client another ID."""
    start = window_start_for(T0)
    assert alert_id_for("C-1001", start) == alert_id_for("C-1001", start.astimezone())
    assert alert_id_for("C-1001", start) != alert_id_for("C-1002", start)
    assert alert_id_for("C-1001", start).startswith("al-") and len(alert_id_for("C-1001", start)) == 23


def test_failures_within_one_window_make_one_alert(store_location: Path | str, make_failure: MakeFailure) -> None:
    """Three failures of one client within ten minutes become one alert with three events."""
    failures = [make_failure(f"ev-{i}", T0 + timedelta(minutes=3 * i)) for i in range(3)]
    with AlertStore(store_location) as store:
        result = store.record(failures)
        assert len(result.new_alert_ids) == 1
        assert result.events_inserted == 3 and result.events_duplicate == 0
        (alert,) = store.list_alerts()
        assert alert.event_count == 3
        assert alert.first_event_at == T0 and alert.last_event_at == T0 + timedelta(minutes=6)
        assert alert.window_start == datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
        assert alert.window_end == datetime(2024, 5, 6, 12, 10, tzinfo=UTC)
        assert [e.event_id for e in store.alert_events(alert.alert_id)] == ["ev-0", "ev-1", "ev-2"]
        assert [d.channel for d in alert.deliveries] == ["email"]


def test_grouping_does_not_depend_on_arrival_order(store_location: Path | str, make_failure: MakeFailure) -> None:
    """Events recorded newest first, in separate batches, land in the same alert."""
    with AlertStore(store_location) as store:
        store.record([make_failure("ev-late", T0 + timedelta(minutes=7))])
        result = store.record([make_failure("ev-early", T0)])
        (alert,) = store.list_alerts()
    assert result.new_alert_ids == () and result.updated_alert_ids == (alert.alert_id,)
    assert alert.first_event_at == T0 and alert.event_count == 2


def test_failures_25_minutes_apart_make_two_alerts(store_location: Path | str, make_failure: MakeFailure) -> None:
    """Failures of one client 25 minutes apart fall in different windows: two alerts."""
    with AlertStore(store_location) as store:
        result = store.record([make_failure("ev-a", T0), make_failure("ev-b", T0 + timedelta(minutes=25))])
        alerts = store.list_alerts()
    assert len(result.new_alert_ids) == 2
    assert [a.event_count for a in alerts] == [1, 1]
    assert result.deliveries_enqueued == 2


def test_different_clients_get_different_alerts(store_location: Path | str, make_failure: MakeFailure) -> None:
    """Two clients failing in the same minute get one alert each."""
    with AlertStore(store_location) as store:
        store.record([make_failure("ev-a", T0), make_failure("ev-b", T0, customer_id="C-2002")])
        assert sorted(a.customer_id for a in store.list_alerts()) == ["C-1001", "C-2002"]


def test_replay_creates_no_alert_and_no_delivery(store_location: Path | str, make_failure: MakeFailure) -> None:
    """Recording the same failures again (a replay) changes nothing and is counted."""
    failures = [make_failure(f"ev-{i}", T0 + timedelta(minutes=i)) for i in range(3)]
    with AlertStore(store_location) as store:
        first = store.record(failures, sinks=["jsonl"])
        replay = store.record(list(reversed(failures)), sinks=["jsonl"])
        (alert,) = store.list_alerts()
    assert first.deliveries_enqueued == 2
    assert replay.new_alert_ids == () and replay.updated_alert_ids == ()
    assert replay.events_inserted == 0 and replay.events_duplicate == 3
    assert replay.deliveries_enqueued == 0
    assert alert.event_count == 3 and len(alert.deliveries) == 2


def test_a_duplicate_inside_one_batch_is_counted_once(store_location: Path | str, make_failure: MakeFailure) -> None:
    """The same event_id twice in one batch is stored once."""
    with AlertStore(store_location) as store:
        result = store.record([make_failure("ev-1", T0), make_failure("ev-1", T0)])
        assert (result.events_inserted, result.events_duplicate) == (1, 1)
        assert store.list_alerts()[0].event_count == 1


def test_deliveries_follow_the_manager_and_the_sinks(store_location: Path | str, make_failure: MakeFailure) -> None:
    """A manager with e-mail and webhook plus two sinks gives four deliveries; none gives unrouted."""
    both = Manager(manager_id="RM-1", name="Bo", email="bo@bank.example",
                   webhook_url="https://hooks.bank.example/rm/1")
    silent = Manager(manager_id="RM-2", name="Cy")
    with AlertStore(store_location) as store:
        store.record([make_failure("ev-1", T0, manager=both)], sinks=["console", "jsonl"])
        store.record([make_failure("ev-2", T0, customer_id="C-2", manager=silent)])
        routed, unrouted = sorted(store.list_alerts(), key=lambda a: a.customer_id)
    assert [d.channel for d in routed.deliveries] == ["email", "webhook", "console", "jsonl"]
    assert {d.status for d in routed.deliveries} == {"pending"} and routed.status == "pending"
    assert unrouted.deliveries == () and unrouted.status == "unrouted"


def test_severity_and_action_follow_the_worst_event(store_location: Path | str, make_failure: MakeFailure) -> None:
    """The alert keeps the highest severity and that event's suggested action."""
    with AlertStore(store_location) as store:
        store.record([make_failure("ev-1", T0, severity="low", suggested_action="Watch.")])
        store.record([make_failure("ev-2", T0 + timedelta(minutes=1), severity="high",
                                   suggested_action="Call now.")])
        store.record([make_failure("ev-3", T0 + timedelta(minutes=2), severity="medium",
                                   suggested_action="Email.")])
        (alert,) = store.list_alerts()
    assert (alert.severity, alert.suggested_action) == ("high", "Call now.")


def test_manager_and_client_snapshot_is_stored(store_location: Path | str, make_failure: MakeFailure, paris_manager: Manager) -> None:
    """The alert keeps the manager and client as they were when it was raised."""
    with AlertStore(store_location) as store:
        store.record([make_failure("ev-1", T0)])
        (alert,) = store.list_alerts()
    assert alert.manager == replace(paris_manager, phone=None)
    assert (alert.customer_id, alert.customer_name, alert.tier) == ("C-1001", "Ada Lovelace", "private")


def test_no_raw_pan_reaches_the_database_file(
    store_location: Path | str, tmp_path: Path, make_failure: MakeFailure, request: pytest.FixtureRequest
) -> None:
    """A PAN slipped into card_ref, pan_masked or free text is masked before it is written (file, tables or WAL)."""
    pan = "4000056655665556"
    failure = make_failure("ev-1", T0, card_ref=pan, pan_masked=pan,
                           response_meaning=f"Do not honour {pan}",
                           suggested_action=f"Block card {pan}")
    with AlertStore(store_location) as store:
        store.record([failure])
        (event,) = store.alert_events(store.list_alerts()[0].alert_id)
    assert event.card_ref == event.pan_masked == "400005******5556"
    if isinstance(store_location, Path):
        raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    else:  # every page PostgreSQL wrote: tables, indexes, WAL
        server = request.getfixturevalue("postgres")
        with server.connect() as conn:
            conn.execute("CHECKPOINT")
        raw = server.data_bytes()
    assert b"400005******5556" in raw  # the check reads what the store wrote
    assert pan.encode() not in raw


def test_outbox_claim_leases_rows_and_marks_are_final(store_location: Path | str, make_failure: MakeFailure) -> None:
    """A claimed row is not claimed again during its lease; sent and failed rows leave the outbox; a sink alone notifies nobody."""
    now = datetime.now(UTC)
    with AlertStore(store_location) as store:
        store.record([make_failure("ev-1", T0)], sinks=["jsonl"], now=now)
        email, jsonl = store.claim_due(now, 10, lease_seconds=30)
        assert store.claim_due(now, 10) == []
        assert store.mark_retry(email.delivery_id, "SMTPServerDisconnected: gone", now)
        assert store.mark_sent(jsonl.delivery_id, now)
        assert not store.mark_sent(jsonl.delivery_id, now)
        (again,) = store.claim_due(now, 10)
        assert (again.delivery_id, again.attempts, again.last_error) == (
            email.delivery_id, 1, "SMTPServerDisconnected: gone")
        assert store.mark_failed(again.delivery_id, "SMTPServerDisconnected: gone again")
        assert store.claim_due(now + timedelta(days=1), 10) == []
        alert = store.list_alerts()[0]
    assert [(d.channel, d.status, d.attempts) for d in alert.deliveries] == [
        ("email", "failed", 2), ("jsonl", "sent", 1)]
    assert alert.status == "failed"


def test_an_expired_lease_makes_the_row_due_again(store_location: Path | str, make_failure: MakeFailure) -> None:
    """A row claimed by a worker that died is claimed again once its lease ends."""
    now = datetime.now(UTC)
    with AlertStore(store_location) as store:
        store.record([make_failure("ev-1", T0)], now=now)
        (claimed,) = store.claim_due(now, 10, lease_seconds=30)
        assert store.claim_due(now + timedelta(seconds=29), 10) == []
        (reclaimed,) = store.claim_due(now + timedelta(seconds=31), 10)
    assert reclaimed.delivery_id == claimed.delivery_id and reclaimed.attempts == 0


def test_a_renewed_lease_holds_and_a_changed_row_is_left_alone(
    store_location: Path | str, make_failure: MakeFailure
) -> None:
    """Renewing extends a lease the caller still holds; a row marked or claimed again since keeps its own time."""
    now = datetime.now(UTC)
    with AlertStore(store_location) as store:
        store.record([make_failure("ev-1", T0)], sinks=["jsonl"], now=now)
        email, jsonl = store.claim_due(now, 10, lease_seconds=30)
        held = now + timedelta(seconds=30)
        retry_at = now + timedelta(seconds=5)
        assert store.mark_retry(jsonl.delivery_id, "OSError: disk full", retry_at)
        until = now + timedelta(seconds=60)
        renewed = store.renew_leases({email.delivery_id: held, jsonl.delivery_id: held}, until)
        assert renewed == [email.delivery_id]
        assert store.claim_due(now + timedelta(seconds=59), 10)[0].delivery_id == jsonl.delivery_id
        assert store.claim_due(now + timedelta(seconds=59), 10) == []
        # The lease ran out and another worker claimed the row: the old holder cannot renew it.
        (again,) = store.claim_due(until, 10, lease_seconds=30)
        assert again.delivery_id == email.delivery_id
        assert store.renew_leases({email.delivery_id: until}, until + timedelta(seconds=60)) == []
        assert store.claim_due(until + timedelta(seconds=31), 10)[0].delivery_id == email.delivery_id


def test_committed_alerts_survive_reopening(
    store_location: Path | str, tmp_path: Path, make_failure: MakeFailure
) -> None:
    """What record returned is in the store for a new connection to the same file or database."""
    location = tmp_path / "var" / "alerts.db" if isinstance(store_location, Path) else store_location
    store = AlertStore(location)
    result = store.record([make_failure("ev-1", T0)])
    store.close()
    with AlertStore(location) as reopened:
        (alert,) = reopened.list_alerts()
        assert alert.alert_id == result.new_alert_ids[0]
        assert [d.status for d in alert.deliveries] == ["pending"]
        assert reopened.schema_version == SCHEMA_VERSION
    if isinstance(location, Path):
        with sqlite3.connect(location) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_failed_record_commits_nothing(store_location: Path | str, make_failure: MakeFailure) -> None:
    """If one failure of a batch is invalid, none of the batch is stored."""
    naive = make_failure("ev-2", datetime(2024, 5, 6, 12, 0))
    with AlertStore(store_location) as store:
        with pytest.raises(ValueError, match="timezone-aware"):
            store.record([make_failure("ev-1", T0), naive])
        assert store.list_alerts() == []
        assert store.record([make_failure("ev-1", T0)]).events_inserted == 1


def test_unconfigured_manager_channels_get_no_delivery(store_location: Path | str, make_failure: MakeFailure) -> None:
    """Without an e-mail channel configured, a manager's e-mail address gets no outbox row."""
    both = Manager(manager_id="RM-1", name="Bo", email="bo@bank.example",
                   webhook_url="https://hooks.bank.example/rm/1")
    with AlertStore(store_location) as store:
        result = store.record([make_failure("ev-1", T0, manager=both)], channels=["webhook"],
                              sinks=["jsonl"])
        (alert,) = store.list_alerts()
    assert result.deliveries_enqueued == 2
    assert [d.channel for d in alert.deliveries] == ["webhook", "jsonl"]


def test_pending_count_follows_the_outbox(store_location: Path | str, make_failure: MakeFailure) -> None:
    """The pending count is what still waits to be sent: it falls as deliveries are sent or fail."""
    now = datetime.now(UTC)
    with AlertStore(store_location) as store:
        assert store.pending_count() == 0
        store.record([make_failure("ev-1", T0)], sinks=["jsonl"], now=now)
        assert store.pending_count() == 2
        email, jsonl = store.claim_due(now, 10)
        store.mark_sent(jsonl.delivery_id, now)
        assert store.pending_count() == 1
        store.mark_failed(email.delivery_id, "refused")
        assert store.pending_count() == 0


def test_the_merchant_name_is_stored_and_read_back(store_location: Path | str, make_failure: MakeFailure) -> None:
    """The card acceptor's name (ISO 8583 field 43) comes back from the store with its event."""
    failure = make_failure("ev-shop", T0)
    failure = replace(failure, event=replace(failure.event, merchant_name="CAFE DU PORT LYON FR"))
    with AlertStore(store_location) as store:
        store.record([failure])
        (alert,) = store.list_alerts()
        (event,) = store.alert_events(alert.alert_id)
        assert event.merchant_name == "CAFE DU PORT LYON FR"
