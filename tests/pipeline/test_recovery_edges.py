"""The recovery watch at its edges, on SQLite and PostgreSQL: ties, zones, redelivery, many clients."""

from __future__ import annotations

import contextlib
import itertools
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.alerts.store import AlertStore
from monitor.domain import Manager, VipFailure
from monitor.pipeline.recovery import RecoveryWatch
from tests.pipeline.recovery_helpers import approval_frame, withdrawal_failure

# 2026-10-25 01:30 UTC: Paris leaves summer time during the window (03:00 CEST -> 02:00 CET).
T0 = datetime(2026, 10, 25, 0, 45, tzinfo=UTC)
WINDOW = 1800
MANAGER = Manager(manager_id="RM-1", name="Paul Durand", email="paul@bank.example")
PARIS = ZoneInfo("Europe/Paris")


def _failure(customer_id: str, at: datetime = T0, event_id: str | None = None) -> VipFailure:
    """A failed ATM withdrawal of ``customer_id`` at ``at``."""
    return withdrawal_failure(event_id or f"f-{customer_id}", at, customer_id=customer_id,
                              manager=MANAGER, merchant_id=None)


def _approval(event_id: str, customer_id: str, at: datetime, channel: str = "ATM") -> pl.DataFrame:
    """One approved withdrawal of ``customer_id`` at ``at``."""
    return approval_frame((event_id, at, customer_id, channel, f"T-{event_id}"))


def _only(store: AlertStore):  # type: ignore[no-untyped-def]
    """The store's one recovery watch."""
    [recovery] = store.recoveries_of([a.alert_id for a in store.list_alerts()]).values()
    return recovery


def test_an_approval_exactly_at_the_deadline_recovers_and_one_at_the_first_failure_does_not(
    store_location: Path | str,
) -> None:
    """The window is ``first failure < approval <= deadline`` to the microsecond, in any store."""
    with AlertStore(store_location) as store:
        store.record([_failure("C-1")], recovery_window_seconds=WINDOW)
        watch = RecoveryWatch(store, watermark=lambda: None, lateness_seconds=10)
        assert watch.after_batch(_approval("same-us", "C-1", T0)).recovered == ()
        deadline = T0 + timedelta(seconds=WINDOW)
        assert watch.after_batch(_approval("past", "C-1", deadline + timedelta(microseconds=1))
                                 ).recovered == ()
        assert len(watch.after_batch(_approval("edge", "C-1", deadline)).recovered) == 1
        assert _only(store).recovery_event_id == "edge"


def test_approval_times_in_another_zone_across_a_dst_change_match_by_their_instant(
    store_location: Path | str,
) -> None:
    """Paris times (the night summer time ends) and nanosecond columns match as their UTC instant."""
    with AlertStore(store_location) as store:
        store.record([_failure("C-1", T0.astimezone(PARIS))], recovery_window_seconds=WINDOW)
        watch = RecoveryWatch(store, watermark=lambda: None, lateness_seconds=10)
        before = _approval("before", "C-1", T0 - timedelta(seconds=1)).with_columns(
            pl.col("occurred_at").dt.convert_time_zone("Europe/Paris"))
        assert watch.after_batch(before).recovered == ()
        # 01:10 UTC is 02:10 CET after the change, an hour Paris clocks show twice.
        later = _approval("ok", "C-1", T0 + timedelta(minutes=25)).with_columns(
            pl.col("occurred_at").dt.convert_time_zone("Europe/Paris").dt.cast_time_unit("ns"))
        assert len(watch.after_batch(later).recovered) == 1
        recovery = _only(store)
    assert recovery.recovered_at == T0 + timedelta(minutes=25)
    assert recovery.seconds_to_recovery == 25 * 60


def test_an_approval_of_a_kind_that_did_not_fail_does_not_recover(
    store_location: Path | str,
) -> None:
    """A shop purchase after a failed ATM withdrawal leaves the watch watching, then abandoned."""
    watermark: list[datetime | None] = [None]
    with AlertStore(store_location) as store:
        store.record([_failure("C-1")], recovery_window_seconds=WINDOW)
        watch = RecoveryWatch(store, watermark=lambda: watermark[0], lateness_seconds=10)
        pos = _approval("pos", "C-1", T0 + timedelta(minutes=1), channel="POS")
        assert watch.after_batch(pos).recovered == ()
        watermark[0] = T0 + timedelta(seconds=WINDOW, microseconds=1)
        assert len(watch.decide().abandoned) == 1


def test_the_same_approval_delivered_twice_makes_one_decision(store_location: Path | str) -> None:
    """A redelivered batch (after a crash) matches again but decides nothing twice."""
    with AlertStore(store_location) as store:
        store.record([_failure("C-1")], recovery_window_seconds=WINDOW)
        watch = RecoveryWatch(store, watermark=lambda: None, lateness_seconds=10)
        batch = _approval("ok", "C-1", T0 + timedelta(minutes=2))
        first = watch.after_batch(pl.concat([batch, batch]))
        again = watch.after_batch(batch)
        restarted = RecoveryWatch(store, watermark=lambda: None, lateness_seconds=10)
        replayed = restarted.after_batch(batch)
        recovery = _only(store)
    assert (len(first.recovered), again.recovered, replayed.recovered) == (1, (), ())
    assert (recovery.recovery_event_id, recovery.decided_at is not None) == ("ok", True)


def test_two_approvals_in_the_same_microsecond_give_the_same_winner_whatever_the_batches(
    store_location: Path | str,
) -> None:
    """Tied times are broken by event ID, as in one batch, when the later ID is processed first."""
    at = T0 + timedelta(minutes=3)
    splits = {"C-one": [("e-1", "e-2")], "C-late-first": [("e-2",), ("e-1",)],
              "C-early-first": [("e-1",), ("e-2",)]}
    with AlertStore(store_location) as store:
        store.record([_failure(c) for c in splits], recovery_window_seconds=WINDOW)
        watch = RecoveryWatch(store, watermark=lambda: None, lateness_seconds=10)
        for client, batches in splits.items():
            for ids in batches:
                watch.after_batch(pl.concat([_approval(f"{i}", client, at) for i in ids]))
        recoveries = store.recoveries_of([a.alert_id for a in store.list_alerts()]).values()
    assert {r.customer_id: r.recovery_event_id for r in recoveries} == dict.fromkeys(splits, "e-1")


def test_two_instances_with_tied_approvals_keep_the_lower_event_id(
    store_location: Path | str,
) -> None:
    """Instance A marks ``e-2`` first; B's ``e-1`` at the same microsecond replaces it, as one batch would."""
    at = T0 + timedelta(minutes=3)
    with AlertStore(store_location) as a_store, AlertStore(store_location) as b_store:
        a_store.record([_failure("C-1")], recovery_window_seconds=WINDOW)
        a = RecoveryWatch(a_store, watermark=lambda: None, lateness_seconds=10)
        b = RecoveryWatch(b_store, watermark=lambda: None, lateness_seconds=10)
        assert len(a.after_batch(_approval("e-2", "C-1", at)).recovered) == 1
        assert b.after_batch(_approval("e-1", "C-1", at)).recovered == ()  # no second decision
        recovery = _only(a_store)
    assert (recovery.recovery_event_id, recovery.terminal_id) == ("e-1", "T-e-1")


def test_many_open_watches_read_per_client_in_chunks_recover_and_abandon_the_rest(
    store_location: Path | str,
) -> None:
    """700 watching clients, 600 approvals (two chunks of clients): every one matched, the rest abandoned."""
    clients = [f"C-{n:04d}" for n in range(700)]
    watermark: list[datetime | None] = [None]
    with AlertStore(store_location) as store:
        store.record([_failure(c) for c in clients], recovery_window_seconds=WINDOW)
        watch = RecoveryWatch(store, watermark=lambda: watermark[0], lateness_seconds=10)
        assert watch.decide() == watch.decide()  # nothing to match; learns nothing yet
        watch.after_batch(_approval("warm", "C-0000", T0 - timedelta(minutes=1)))  # reads all
        frame = pl.concat([_approval(f"ok-{c}", c, T0 + timedelta(minutes=1)) for c in clients[:600]])
        watermark[0] = T0 + timedelta(seconds=WINDOW, microseconds=1)
        decided = watch.after_batch(frame)
        recoveries = store.recoveries_of([a.alert_id for a in store.list_alerts()])
    assert (len(decided.recovered), len(decided.abandoned)) == (600, 100)
    by_client = {r.customer_id: r.status for r in recoveries.values()}
    assert {c for c, s in by_client.items() if s == "recovered"} == set(clients[:600])


def test_one_approval_recovers_the_clients_watches_in_two_alerts_one_of_them_resolved(
    store_location: Path | str,
) -> None:
    """A client whose first ATM alert was resolved and who failed again: one approval recovers both watches."""
    with AlertStore(store_location) as store:
        [first] = store.record([_failure("C-1")], recovery_window_seconds=WINDOW).new_alert_ids
        store.acknowledge(first, by="RM-1", via="workspace", note=None)
        store.resolve(first, by="RM-1", via="workspace", note="called the client")
        [second] = store.record([_failure("C-1", T0 + timedelta(minutes=5), "f-2")],
                                recovery_window_seconds=WINDOW).new_alert_ids
        watch = RecoveryWatch(store, watermark=lambda: None, lateness_seconds=10)
        decided = watch.after_batch(_approval("ok", "C-1", T0 + timedelta(minutes=6)))
    assert first != second
    assert sorted((r.alert_id, r.recovery_event_id) for r in decided.recovered) == sorted(
        [(first, "ok"), (second, "ok")])


def test_two_instances_racing_in_threads_with_different_splits_decide_once_the_earliest(
    store_location: Path | str,
) -> None:
    """Two instances in two threads, one batch each way: every watch decided once, by its earliest approval."""
    import random
    import threading

    clients = [f"C-{n:03d}" for n in range(60)]
    rng = random.Random(7)
    approvals = [(f"ok-{c}-{k}", c, T0 + timedelta(seconds=rng.randrange(1, 600), microseconds=k))
                 for c in clients for k in range(4)]
    earliest = {c: min((at, e) for e, cc, at in approvals if cc == c)[1] for c in clients}
    with AlertStore(store_location) as a_store, AlertStore(store_location) as b_store:
        a_store.record([_failure(c) for c in clients], recovery_window_seconds=WINDOW)
        a = RecoveryWatch(a_store, watermark=lambda: None, lateness_seconds=10)
        b = RecoveryWatch(b_store, watermark=lambda: None, lateness_seconds=10)
        shuffled = approvals[:]
        rng.shuffle(shuffled)
        halves = {a: shuffled[::2], b: shuffled[1::2]}
        decided: dict[RecoveryWatch, int] = {a: 0, b: 0}
        errors: list[BaseException] = []

        def run(watch: RecoveryWatch, size: int) -> None:
            try:
                rows = halves[watch]
                for start in range(0, len(rows), size):
                    frame = pl.concat([_approval(e, c, at) for e, c, at in rows[start:start + size]])
                    decided[watch] += len(watch.after_batch(frame).recovered)
                decided[watch] += len(watch.decide().recovered)
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=run, args=(a, 7)), threading.Thread(target=run, args=(b, 13))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        a.decide()
        b.decide()
        recoveries = a_store.recoveries_of([x.alert_id for x in a_store.list_alerts()]).values()
    assert errors == []
    assert decided[a] + decided[b] == len(clients)
    assert {r.customer_id: r.recovery_event_id for r in recoveries} == earliest


_KINDS = (("ATM", "withdrawal"), ("POS", "purchase"))
_FAIL = st.tuples(st.sampled_from(("C-1", "C-2")), st.sampled_from(_KINDS), st.integers(0, 12))
_OK = st.tuples(st.sampled_from(("C-1", "C-2")), st.sampled_from(_KINDS), st.integers(0, 50),
                st.sampled_from(("ok-1", "ok-2", "ok-3")))


def _kind_failure(n: int, client: str, kind: tuple[str, str], minute: int) -> VipFailure:
    """A failure of ``kind`` of ``client`` ``minute`` after T0 (event ``f-n``)."""
    failure = _failure(client, T0 + timedelta(minutes=minute), f"f-{n}")
    event = replace(failure.event, channel=kind[0], txn_type=kind[1],
                    terminal_id=f"{kind[0]}0000{n % 10}")
    return replace(failure, event=event)


def _kind_approvals(rows: list[tuple[int, tuple[str, tuple[str, str], int, str]]]) -> pl.DataFrame:
    """Approvals ``(n, (client, kind, minute, id))``: event ID ``id-n`` (ties share a minute)."""
    return pl.DataFrame(
        [(client, kind[0], kind[1], T0 + timedelta(minutes=minute), f"{eid}-{n}", f"T-{n}", None)
         for n, (client, kind, minute, eid) in rows],
        schema=dict(approval_frame().schema), orient="row")


def _outcome(failures: list, approvals: list, order: list[int], cuts: list[int],  # type: ignore[type-arg]
             instances: int = 1) -> dict:  # type: ignore[type-arg]
    """Run the watch over the steps in ``order`` cut into batches; each watch's (status, event).

    With two instances (one SQLite file) the batches alternate between them.
    """
    steps = [("f", n, item) for n, item in enumerate(failures)] + [
        ("a", n, item) for n, item in enumerate(approvals)]
    ordered = [steps[i] for i in order]
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        stores = [stack.enter_context(AlertStore(Path(folder) / "alerts.db"))
                  for _ in range(instances)]
        watches = [RecoveryWatch(store, watermark=lambda: None, lateness_seconds=3600)
                   for store in stores]
        bounds = [0, *sorted(set(cuts)), len(ordered)]
        for number, (start, end) in enumerate(itertools.pairwise(bounds)):
            batch = ordered[start:end]
            store, watch = stores[number % instances], watches[number % instances]
            fs = [_kind_failure(n, *item) for tag, n, item in batch if tag == "f"]
            if fs:
                store.record(fs, recovery_window_seconds=WINDOW)
            watch.after_batch(_kind_approvals([(n, item) for tag, n, item in batch if tag == "a"]),
                              failures=bool(fs))
        for watch in watches:
            watch.decide()
        recoveries = stores[0].recoveries_of([a.alert_id for a in stores[0].list_alerts()]).values()
        return {(r.customer_id, r.first_failed_at): (r.status, r.recovery_event_id)
                for r in recoveries}


@pytest.mark.parametrize("instances", [1, 2])
@settings(max_examples=60, deadline=None)
@given(st.lists(_FAIL, min_size=1, max_size=4), st.lists(_OK, max_size=6), st.randoms(),
       st.lists(st.integers(0, 10), max_size=4))
def test_any_batch_split_order_and_instance_gives_the_result_of_one_batch(
    instances: int, failures: list, approvals: list, rng: Any, cuts: list[int],  # type: ignore[type-arg]
) -> None:
    """Failures and approvals in any order, batches and instances end as when all come in one batch."""
    steps = len(failures) + len(approvals)
    order = list(range(steps))
    rng.shuffle(order)
    once = _outcome(failures, approvals, list(range(steps)), [])
    assert _outcome(failures, approvals, order, [c for c in cuts if c < steps], instances) == once
