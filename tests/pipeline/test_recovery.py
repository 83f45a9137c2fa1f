"""The recovery watch's matching and decisions: the same whatever the batches and order."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from monitor.alerts.store import AlertStore
from monitor.domain import Manager, VipFailure
from monitor.paths import rules_path
from monitor.pipeline.classify import ResponseCodeTable
from monitor.pipeline.processor import APPROVAL_COLUMNS, BatchProcessor
from monitor.pipeline.recovery import RecoveryWatch, match_recoveries, watch_frame
from monitor.pipeline.selection import AlertPolicy
from monitor.pipeline.vips import RegistryLoader
from tests.helpers import encode, event, write_registry
from tests.pipeline.recovery_helpers import approval_frame, withdrawal_failure

T0 = datetime(2024, 5, 6, 12, 1, 30, tzinfo=UTC)
WINDOW = 1800
MANAGER = Manager(manager_id="RM-017", name="Claire Martin", email="claire@bank.example")


def _failure(event_id: str, minutes: float, customer_id: str = "C-1") -> VipFailure:
    """A failed ATM withdrawal of ``customer_id``, ``minutes`` after T0."""
    return withdrawal_failure(event_id, T0 + timedelta(minutes=minutes), customer_id=customer_id,
                              manager=MANAGER)


def _approvals(*rows: tuple[str, float, str, str, str]) -> pl.DataFrame:
    """Approvals ``(event_id, minutes after T0, customer_id, channel, terminal_id)``."""
    return approval_frame(*((event_id, T0 + timedelta(minutes=minutes), customer, channel, terminal)
                            for event_id, minutes, customer, channel, terminal in rows))


def test_the_earliest_approval_of_the_same_kind_in_the_window_wins() -> None:
    """Only the same kind between first failure and deadline counts; the earliest wins."""
    with AlertStore(":memory:") as store:
        [alert_id] = store.record(
            [_failure("f-1", 0)], recovery_window_seconds=WINDOW
        ).new_alert_ids
        watches = watch_frame(store.watching_recoveries())
    approvals = _approvals(
        ("before", -1, "C-1", "ATM", "ATM1"),
        ("pos", 2, "C-1", "POS", "POS1"),
        ("other", 2, "C-2", "ATM", "ATM1"),
        ("late", 31, "C-1", "ATM", "ATM1"),
        ("second", 9, "C-1", "ATM", "ATM2"),
        ("first", 3, "C-1", "ATM", "ATM3"),
    )
    assert tuple(approvals.columns) == APPROVAL_COLUMNS
    results = {
        tuple(
            match_recoveries(
                watches, approvals.sample(fraction=1.0, shuffle=True, seed=seed)
            ).rows()
        )
        for seed in range(5)
    }
    assert len(results) == 1
    [(matched, at, event_id, terminal, *_)] = results.pop()
    assert (matched, at, event_id, terminal) == (
        alert_id,
        T0 + timedelta(minutes=3),
        "first",
        "ATM3",
    )
    at_deadline = _approvals(("edge", 30, "C-1", "ATM", "ATM1"))
    assert match_recoveries(watches, at_deadline).get_column("event_id").to_list() == ["edge"]


# Steps of one run: the failure recorded, or an approval batch processed, with the watermark then.
_STEPS = {
    "failure": ("failure", None),
    "early": ("approvals", _approvals(("ok-4", 4, "C-1", "ATM", "ATM7"))),
    "later": ("approvals", _approvals(("ok-8", 8, "C-1", "ATM", "ATM8"))),
}


@pytest.mark.parametrize("order", list(itertools.permutations(_STEPS)))
def test_any_processing_order_gives_the_same_recovery(
    tmp_path: Path, order: tuple[str, ...]
) -> None:
    """Approvals before the failure, after it, or both: the earliest recovers the watch."""
    watermark: list[datetime | None] = [T0 - timedelta(minutes=5)]
    with AlertStore(tmp_path / "alerts.db") as store:
        watch = RecoveryWatch(store, watermark=lambda: watermark[0], lateness_seconds=10)
        decided = []
        for step in order:
            kind, frame = _STEPS[step]
            if kind == "failure":
                store.record([_failure("f-1", 0)], recovery_window_seconds=WINDOW)
                decided.append(watch.after_batch(_approvals()))
            else:
                assert frame is not None
                decided.append(watch.after_batch(frame))
        [recovery] = store.recoveries_of([r.alert_id for r in store.list_alerts()]).values()
    assert (recovery.status, recovery.recovery_event_id, recovery.terminal_id) == (
        "recovered",
        "ok-4",
        "ATM7",
    )
    assert sum(len(d.recovered) for d in decided) == 1  # one decision, counted once


def _purchase_failure(event_id: str, minutes: float) -> VipFailure:
    failure = _failure(event_id, minutes)
    event = replace(failure.event, channel="POS", txn_type="purchase", terminal_id="POS00001")
    return replace(failure, event=event)


_MIXED = {
    "purchase failed": ("failure", _purchase_failure("f-pos", 0)),
    "withdrawal failed": ("failure", _failure("f-atm", 0.5)),
    "withdrawal approved": ("approvals", _approvals(("ok-atm", 2.5, "C-1", "ATM", "ATM7"))),
}


@pytest.mark.parametrize("order", list(itertools.permutations(_MIXED)))
def test_an_alert_of_two_kinds_recovers_by_either_in_any_order(
    tmp_path: Path, order: tuple[str, ...]
) -> None:
    """A failed purchase then a failed withdrawal, then the cash: recovered, whatever order they are processed in."""
    with AlertStore(tmp_path / "alerts.db") as store:
        watch = RecoveryWatch(store, watermark=lambda: T0 - timedelta(minutes=5), lateness_seconds=10)
        for step in order:
            kind, value = _MIXED[step]
            if kind == "failure":
                assert isinstance(value, VipFailure)
                store.record([value], recovery_window_seconds=WINDOW)
                watch.after_batch(_approvals())
            else:
                assert isinstance(value, pl.DataFrame)
                watch.after_batch(value)
        [recovery] = store.recoveries_of([r.alert_id for r in store.list_alerts()]).values()
    assert (recovery.status, recovery.recovery_event_id, recovery.recovery_channel,
            recovery.completed_txn_type) == ("recovered", "ok-atm", "ATM", "withdrawal")
    # The watch's own kind is the earliest failure's, whatever the order.
    assert (recovery.channel, recovery.txn_type, recovery.first_failed_at) == ("POS", "purchase", T0)
    # Measured from the failed withdrawal (the kind completed), at ATM00042, not the purchase.
    assert (recovery.seconds_to_recovery, recovery.reference_terminal_id) == (120.0, "ATM00042")
    assert recovery.same_terminal is False


def test_an_approval_before_its_kind_failed_does_not_recover() -> None:
    """A withdrawal completed between a failed purchase and a failed withdrawal does not recover the withdrawal."""
    with AlertStore(":memory:") as store:
        watch = RecoveryWatch(store, watermark=lambda: None, lateness_seconds=10)
        store.record([_purchase_failure("f-pos", 0), _failure("f-atm", 5)], recovery_window_seconds=WINDOW)
        decided = watch.after_batch(_approvals(("ok-early", 2, "C-1", "ATM", "ATM7")))
    assert decided.recovered == ()


def test_a_failure_and_its_recovery_in_one_batch_are_matched() -> None:
    """A batch's failures are stored before its approvals are matched: one batch holds both."""
    with AlertStore(":memory:") as store:
        watch = RecoveryWatch(store, watermark=lambda: None, lateness_seconds=10)
        store.record([_failure("f-1", 0)], recovery_window_seconds=WINDOW)
        decided = watch.after_batch(_approvals(("ok-3", 3, "C-1", "ATM", "ATM9")))
    assert [r.recovery_event_id for r in decided.recovered] == ["ok-3"]
    assert decided.recovered[0].seconds_to_recovery == 180.0
    assert decided.recovered[0].same_terminal is False


def test_abandoned_once_the_watermark_passes_the_deadline_and_old_approvals_leave_the_buffer() -> (
    None
):
    """Abandoned when the watermark passes the deadline; the buffer keeps recent approvals."""
    watermark: list[datetime | None] = [T0 + timedelta(minutes=29)]
    with AlertStore(":memory:") as store:
        watch = RecoveryWatch(store, watermark=lambda: watermark[0], lateness_seconds=10)
        store.record(
            [_failure("f-1", 0), _failure("f-2", 0, customer_id="C-2")],
            recovery_window_seconds=WINDOW,
        )
        assert (
            watch.after_batch(
                _approvals(("old", 28, "C-9", "ATM", "ATM1"), ("new", 29.5, "C-9", "ATM", "ATM1"))
            ).abandoned
            == ()
        )
        assert watch.buffered == 1
        watermark[0] = T0 + timedelta(minutes=30, seconds=1)
        decided = watch.decide()
    assert sorted(r.customer_id for r in decided.abandoned) == ["C-1", "C-2"]
    assert {r.status for r in decided.abandoned} == {"abandoned"}


def test_a_batch_gives_its_vip_approvals_for_the_watch(tmp_path: Path) -> None:
    """Only VIP clients' approved transactions (card-matched or named), the watch's columns."""
    customers, managers = write_registry(
        tmp_path,
        "customer_id,name,tier,manager_id,card_refs\nC-001,Ada,private,M1,tok_ada",
        "manager_id,name,email,timezone\nM1,Alice Martin,alice@bank.example,Europe/Paris",
    )
    loader = RegistryLoader(customers, managers)
    loader.load()
    processor = BatchProcessor(
        codes=ResponseCodeTable.load(rules_path("response_codes.yaml")),
        policy=AlertPolicy.load(rules_path("alerting.yaml")),
        registry=loader,
    )
    result = processor.process(
        [
            encode(event("vip-ok", card_ref="tok_ada", terminal_id="ATM00077", merchant_id="M-7")),
            encode(event("vip-declined", card_ref="tok_ada", response_code="91")),
            encode(
                event(
                    "named-ok",
                    customer_id="C-001",
                    channel="POS",
                    txn_type="purchase",
                    terminal_id="POS00001",
                    entry_mode="chip",
                )
            ),
            encode(event("other-ok", card_ref="tok_someone")),
        ]
    )
    approvals = result.approvals.sort("event_id")
    assert tuple(approvals.columns) == APPROVAL_COLUMNS
    assert approvals.select("event_id", "customer_id", "channel", "terminal_id").rows() == [
        ("named-ok", "C-001", "POS", "POS00001"),
        ("vip-ok", "C-001", "ATM", "ATM00077"),
    ]
    assert approvals.get_column("merchant_id").to_list() == [None, "M-7"]


def test_a_buffered_approval_wins_over_the_deadline_in_a_batch_without_vip_events() -> None:
    """A watch another instance wrote, recovered by an approval buffered here, is matched before it can expire."""
    watermark: list[datetime | None] = [T0 - timedelta(minutes=5)]
    with AlertStore(":memory:") as store:
        watch = RecoveryWatch(store, watermark=lambda: watermark[0], lateness_seconds=10)
        watch.after_batch(_approvals(("ok-3", 3, "C-1", "ATM", "ATM7")))  # no watch yet
        store.record([_failure("f-1", 0)], recovery_window_seconds=WINDOW)  # "another instance"
        watermark[0] = T0 + timedelta(minutes=31)  # event time raced past the deadline
        decided = watch.after_batch(_approvals(), failures=False)
    assert [r.recovery_event_id for r in decided.recovered] == ["ok-3"]
    assert decided.abandoned == ()


def test_an_alert_of_two_kinds_recovered_where_that_kind_failed_is_the_same_terminal() -> None:
    """Purchase failed at a POS, withdrawal failed at ATM00042, cash then taken at ATM00042: same terminal, from the withdrawal."""
    with AlertStore(":memory:") as store:
        watch = RecoveryWatch(store, watermark=lambda: None, lateness_seconds=10)
        store.record([_purchase_failure("f-pos", 0), _failure("f-atm", 1)], recovery_window_seconds=WINDOW)
        [recovery] = watch.after_batch(_approvals(("ok", 5, "C-1", "ATM", "ATM00042"))).recovered
    assert (recovery.same_terminal, recovery.seconds_to_recovery) == (True, 240.0)
