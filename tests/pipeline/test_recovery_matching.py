"""The recovery watch's Python matching, its one read of the open watches, and its buffer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.alerts.store import AlertStore
from monitor.alerts.store.recoveries import Recovery, RecoveryMatch, WatchKind
from monitor.domain import AlertEvent, Manager, VipFailure
from monitor.pipeline.recovery import (
    RecoveryWatch,
    approvals_by_kind,
    earliest_recoveries,
    match_recoveries,
    watch_frame,
)

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
WINDOW = 1800  # seconds
MANAGER = Manager(manager_id="RM-1", name="Paul Durand", email="paul@bank.example")
CLIENTS = ("C-1", "C-2")
KINDS = (("ATM", "withdrawal"), ("POS", "purchase"))
_SCHEMA = pl.Schema({"customer_id": pl.String(), "channel": pl.String(), "txn_type": pl.String(),
                     "occurred_at": pl.Datetime("us", "UTC"), "event_id": pl.String(),
                     "terminal_id": pl.String(), "merchant_id": pl.String()})


def _at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def _failure(event_id: str, customer_id: str, minute: int, kind: tuple[str, str] = KINDS[0]
             ) -> VipFailure:
    event = AlertEvent(
        event_id=event_id, occurred_at=_at(minute), channel=kind[0], terminal_id="ATM00042",
        merchant_id=None, txn_type=kind[1], amount_minor=20000, currency="EUR",
        response_code="91", outcome="technical", response_meaning="Issuer unavailable")
    return VipFailure(event=event, customer_id=customer_id, customer_name="Ada", tier="private",
                      manager=MANAGER, severity="high", suggested_action="Call the client.")


def _approvals(rows: list[tuple[str, str, tuple[str, str], int]]) -> pl.DataFrame:
    """Approvals ``(event_id, customer_id, kind, minute after T0)``."""
    return pl.DataFrame(
        [(customer, kind[0], kind[1], _at(minute), event_id, f"T-{event_id}", None)
         for event_id, customer, kind, minute in rows],
        schema=_SCHEMA, orient="row")


def _watch(alert_id: str, customer_id: str, first: int, deadline: int) -> Recovery:
    kind = KINDS[0]
    return Recovery(alert_id=alert_id, customer_id=customer_id, manager_id="RM-1",
                    channel=kind[0], txn_type=kind[1], outcome="technical",
                    failed_terminal_id="ATM00042", first_failed_at=_at(first),
                    last_failed_at=_at(first), window_ends_at=_at(deadline), status="watching")


# A watch: its client, its first minute, how long it lasts, and the minutes after its first
# failure that each kind first failed (None: not in the alert; the first kind always is).
_WATCH = st.tuples(st.sampled_from(CLIENTS), st.integers(0, 20), st.integers(1, 15),
                   st.integers(0, 5), st.none() | st.integers(0, 10))
_APPROVAL = st.tuples(st.sampled_from(CLIENTS), st.sampled_from(KINDS), st.integers(0, 40),
                      st.sampled_from(("e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8")))


@settings(max_examples=200, deadline=None)
@given(st.lists(_WATCH, max_size=5), st.lists(_APPROVAL, max_size=12, unique_by=lambda a: a[3]))
def test_python_matching_finds_what_the_polars_join_finds(
        watches: list[tuple[str, int, int, int, int | None]],
        approvals: list[tuple[str, tuple[str, str], int, str]]) -> None:
    """For any watches, kinds and approvals (ties, edges included) both matchers pick the same."""
    recoveries = [_watch(f"al-{i}", client, first, first + length)
                  for i, (client, first, length, _, _) in enumerate(watches)]
    rows: list[tuple[str, str, str, datetime, str]] = []
    for i, (_, first, _, first_kind_after, second_kind_after) in enumerate(watches):
        rows.append((f"al-{i}", *KINDS[0], _at(first + first_kind_after), f"T{i}a"))
        if second_kind_after is not None:
            rows.append((f"al-{i}", *KINDS[1], _at(first + second_kind_after), f"T{i}b"))
    frame = _approvals([(event_id, client, kind, minute)
                        for client, kind, minute, event_id in approvals])
    expected = match_recoveries(watch_frame(recoveries, rows), frame).rows()
    by_alert = {r.alert_id: r for r in recoveries}
    kinds = [WatchKind(alert_id, by_alert[alert_id].customer_id, True, channel, txn_type, first,
                       by_alert[alert_id].window_ends_at, terminal, None)
             for alert_id, channel, txn_type, first, terminal in rows]
    found = [(kind.alert_id, approval.occurred_at, approval.event_id, approval.terminal_id,
              approval.merchant_id, kind.channel, kind.txn_type, kind.first_failed_at,
              kind.failed_terminal_id)
             for kind, approval in earliest_recoveries(kinds, approvals_by_kind(frame))]
    assert found == expected


def test_the_open_watch_kinds_are_every_watching_kind_and_the_recent_recovered_ones(
        store_location: Path | str) -> None:
    """Watching watches give every kind; recovered ones only from the date asked; abandoned never."""
    with AlertStore(store_location) as store:
        [watching] = store.record([_failure("f-1", "C-1", 0), _failure("f-2", "C-1", 1, KINDS[1])],
                                  recovery_window_seconds=WINDOW).new_alert_ids
        [recovered] = store.record([_failure("f-3", "C-2", 0)],
                                   recovery_window_seconds=WINDOW).new_alert_ids
        store.mark_recovered([RecoveryMatch(alert_id=recovered, recovered_at=_at(5), event_id="ok",
                                            terminal_id="T9")], now=T0)
        [abandoned] = store.record([_failure("f-4", "C-3", -100)],
                                   recovery_window_seconds=WINDOW).new_alert_ids
        assert [r.alert_id for r in store.abandon_watches(_at(0), now=T0)] == [abandoned]
        deadline = _at(1) + timedelta(seconds=WINDOW)
        assert sorted(store.open_watch_kinds(recovered_since=None)) == [
            WatchKind(watching, "C-1", True, "ATM", "withdrawal", _at(0), deadline, "ATM00042", None),
            WatchKind(watching, "C-1", True, "POS", "purchase", _at(1), deadline, "ATM00042", None)]
        recent = store.open_watch_kinds(recovered_since=_at(0))
        late = store.open_watch_kinds(recovered_since=_at(0) + timedelta(seconds=WINDOW + 1))
    assert sorted((k.alert_id, k.watching, k.recovered_at) for k in recent) == sorted(
        [(watching, True, None), (watching, True, None), (recovered, False, _at(5))])
    assert {k.alert_id for k in late} == {watching}


def test_a_batch_matches_a_watch_another_instance_wrote_since_the_last_batch(tmp_path: Path) -> None:
    """A buffered approval recovers another instance's new watch at the next batch, without the job."""
    location = tmp_path / "alerts.db"
    with AlertStore(location) as a_store, AlertStore(location) as b_store:
        b = RecoveryWatch(b_store, watermark=lambda: T0, lateness_seconds=3600)
        assert b.after_batch(_approvals([("ok-3", "C-1", KINDS[0], 3)])).recovered == ()
        [alert_id] = a_store.record([_failure("f-1", "C-1", 0)],
                                    recovery_window_seconds=WINDOW).new_alert_ids
        decided = b.after_batch(_approvals([("ok-4", "C-2", KINDS[0], 4)]), failures=False)
    assert [(r.alert_id, r.recovery_event_id) for r in decided.recovered] == [(alert_id, "ok-3")]


def test_an_approval_leaves_the_buffer_exactly_at_the_allowed_lateness() -> None:
    """At the watermark minus the lateness an approval leaves; a microsecond after it, it stays."""
    watermark: list[datetime | None] = [None]
    with AlertStore(":memory:") as store:
        watch = RecoveryWatch(store, watermark=lambda: watermark[0], lateness_seconds=60)
        watch.after_batch(_approvals([("ok-9", "C-1", KINDS[0], 9), ("ok-8", "C-2", KINDS[0], 8)]))
        assert watch.buffered == 2
        watermark[0] = _at(10) - timedelta(microseconds=1)  # keeps what is after 9 min - 1 µs
        watch.decide()
        assert watch.buffered == 1
        watermark[0] = _at(10)  # keeps what is after 9 min
        watch.decide()
        assert watch.buffered == 0


def test_a_watch_recovered_in_the_batch_that_passes_its_deadline_is_not_abandoned() -> None:
    """The match comes first: the recovered watch is not abandoned and nothing else is."""
    watermark: list[datetime | None] = [None]
    with AlertStore(":memory:") as store:
        watch = RecoveryWatch(store, watermark=lambda: watermark[0], lateness_seconds=60)
        [alert_id] = store.record([_failure("f-1", "C-1", 0)],
                                  recovery_window_seconds=WINDOW).new_alert_ids
        watermark[0] = _at(0) + timedelta(seconds=WINDOW + 120)
        decided = watch.after_batch(_approvals([("ok-29", "C-1", KINDS[0], 29)]))
        assert [r.alert_id for r in decided.recovered] == [alert_id]
        assert decided.abandoned == ()
        assert store.recovery_of(alert_id).status == "recovered"  # type: ignore[union-attr]


@pytest.mark.parametrize("minute", [0, 30])
def test_the_window_edges_match_as_the_join_does(minute: int) -> None:
    """An approval at the first failure does not recover; one at the deadline does."""
    with AlertStore(":memory:") as store:
        [alert_id] = store.record([_failure("f-1", "C-1", 0)],
                                  recovery_window_seconds=WINDOW).new_alert_ids
        watch = RecoveryWatch(store, watermark=lambda: None, lateness_seconds=60)
        decided = watch.after_batch(_approvals([("ok", "C-1", KINDS[0], minute)]))
    assert [r.alert_id for r in decided.recovered] == ([] if minute == 0 else [alert_id])


class _ReadsRecorded(AlertStore):
    """The real store, noting which clients each read of the open watches asked for."""

    asked: list[list[str] | None]

    def open_watch_kinds(self, customer_ids: Sequence[str] | None = None, *,
                         recovered_since: datetime | None) -> list[WatchKind]:
        self.asked.append(None if customer_ids is None else list(customer_ids))
        return super().open_watch_kinds(customer_ids, recovered_since=recovered_since)


def test_with_more_watches_than_buffered_clients_only_their_watches_are_read() -> None:
    """Fewer buffered clients than watches: their watches alone are read; abandoning still probes."""
    watermark: list[datetime | None] = [None]
    with _ReadsRecorded(":memory:") as store:
        store.asked = []
        watch = RecoveryWatch(store, watermark=lambda: watermark[0], lateness_seconds=3600)
        alerts = {client: store.record([_failure(f"f-{client}", client, 10 if client == "C-5" else 0)],
                                       recovery_window_seconds=WINDOW).new_alert_ids[0]
                  for client in ("C-1", "C-2", "C-3", "C-4", "C-5")}
        assert watch.after_batch(_approvals([("ok-x", "C-9", KINDS[0], 1)])).recovered == ()
        first = watch.after_batch(_approvals([("ok-1", "C-1", KINDS[0], 5)]))
        watermark[0] = _at(35)  # past the deadline of C-1..C-4 (30 min), not C-5's (40 min)
        second = watch.after_batch(_approvals([("ok-5", "C-5", KINDS[0], 36)]))
    assert store.asked == [None, ["C-1", "C-9"], ["C-1", "C-5", "C-9"]]
    assert [r.alert_id for r in first.recovered] == [alerts["C-1"]]
    assert [r.alert_id for r in second.recovered] == [alerts["C-5"]]
    assert sorted(r.alert_id for r in second.abandoned) == sorted(
        alerts[client] for client in ("C-2", "C-3", "C-4"))
