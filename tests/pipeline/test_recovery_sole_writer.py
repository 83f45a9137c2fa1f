"""The recovery watch of a sole writer matches only what changed, with the same decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.alerts.store import AlertStore
from monitor.domain import AlertEvent, Manager, VipFailure
from monitor.pipeline.recovery import RecoveryDecisions, RecoveryWatch

T0 = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
WINDOW = 600  # seconds
LATENESS = 60  # seconds
CLIENTS = ("C-1", "C-2", "C-3")
CHANNELS = ("ATM", "POS")
MANAGER = Manager(manager_id="RM-017", name="Claire Martin", email="claire@bank.example")
_APPROVAL_SCHEMA = {"customer_id": pl.String, "channel": pl.String, "txn_type": pl.String,
                    "occurred_at": pl.Datetime("us", "UTC"), "event_id": pl.String,
                    "terminal_id": pl.String, "merchant_id": pl.String}


def _failure(event_id: str, minute: int, customer_id: str, channel: str) -> VipFailure:
    event = AlertEvent(
        event_id=event_id, occurred_at=T0 + timedelta(minutes=minute), channel=channel,
        terminal_id="ATM00042", merchant_id="BNK0001", txn_type="withdrawal", amount_minor=20000,
        currency="EUR", response_code="91", outcome="technical",
        response_meaning="Issuer unavailable")
    return VipFailure(event=event, customer_id=customer_id, customer_name="Ada", tier="private",
                      manager=MANAGER, severity="high", suggested_action="Call the client.")


def _approvals(rows: list[tuple[str, int, str, str]]) -> pl.DataFrame:
    """Approvals ``(event_id, minute after T0, customer_id, channel)``."""
    return pl.DataFrame(
        [(customer, channel, "withdrawal", T0 + timedelta(minutes=minute), event_id, "ATM7", None)
         for event_id, minute, customer, channel in rows],
        schema=_APPROVAL_SCHEMA, orient="row")


# One batch: its failures and approvals as (minute, client, channel), and how far the
# watermark then moves (minutes).
_EVENT = st.tuples(st.integers(0, 40), st.sampled_from(CLIENTS), st.sampled_from(CHANNELS))
_BATCH = st.tuples(st.lists(_EVENT, max_size=3), st.lists(_EVENT, max_size=4), st.integers(0, 6))


def _run(batches: list[tuple[list[tuple[int, str, str]], list[tuple[int, str, str]], int]],
         *, sole_writer: bool) -> tuple[list[tuple[list[str], list[str]]], list[tuple[object, ...]]]:
    """Each batch's decisions (alert IDs recovered, abandoned) and every watch at the end."""
    watermark: list[datetime | None] = [None]
    decisions: list[tuple[list[str], list[str]]] = []
    with AlertStore(":memory:") as store:
        watch = RecoveryWatch(store, watermark=lambda: watermark[0], lateness_seconds=LATENESS,
                              now=lambda: T0, sole_writer=sole_writer)
        for number, (failures, approvals, advance) in enumerate(batches):
            written = [_failure(f"f-{number}-{i}", minute, client, channel)
                       for i, (minute, client, channel) in enumerate(failures)]
            if written:
                store.record(written, recovery_window_seconds=WINDOW)
            decided: RecoveryDecisions = watch.after_batch(
                _approvals([(f"ok-{number}-{i}", minute, client, channel)
                            for i, (minute, client, channel) in enumerate(approvals)]),
                failures={failure.customer_id for failure in written})
            decisions.append((sorted(r.alert_id for r in decided.recovered),
                              sorted(r.alert_id for r in decided.abandoned)))
            if advance:
                current = watermark[0] or T0
                watermark[0] = current + timedelta(minutes=advance)
        decisions.append(([r.alert_id for r in watch.decide().recovered], []))
        alerts = [alert.alert_id for alert in store.list_alerts()]
        watches = sorted((r.alert_id, r.status, r.recovered_at, r.recovery_event_id)
                         for r in store.recoveries_of(alerts).values())
    return decisions, watches


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_BATCH, min_size=1, max_size=8))
def test_a_sole_writer_decides_as_matching_the_whole_buffer_every_batch(
        batches: list[tuple[list[tuple[int, str, str]], list[tuple[int, str, str]], int]]) -> None:
    """Matching only new approvals and the clients with new failures gives the same decisions."""
    assert _run(batches, sole_writer=True) == _run(batches, sole_writer=False)


def test_a_sole_writer_matches_an_earlier_buffered_approval_when_the_failure_comes_later() -> None:
    """An approval buffered before its failure's watch is written recovers it in that batch."""
    batches = [([], [(5, "C-1", "ATM")], 0), ([], [(6, "C-2", "ATM")], 0),
               ([(2, "C-1", "ATM")], [], 0)]
    decisions, watches = _run(batches, sole_writer=True)
    assert [len(recovered) for recovered, _ in decisions] == [0, 0, 1, 0]
    [(_, status, at, event_id)] = watches
    assert (status, at, event_id) == ("recovered", T0 + timedelta(minutes=5), "ok-0-0")
