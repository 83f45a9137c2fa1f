"""Sent outcomes recorded in group commits: one transaction for the marks that wait, same states as one by one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.alerts.delivery.sent_marks import SentMarks
from monitor.alerts.store import AlertStore
from monitor.domain import VipFailure

MakeFailure = Callable[..., VipFailure]
T0 = datetime(2024, 5, 6, 12, 1, 30, tzinfo=UTC)


def _pending(store: AlertStore, make_failure: MakeFailure, clients: int) -> list[int]:
    store.record([make_failure(f"ev-{n}", T0, customer_id=f"C-{n:03d}") for n in range(clients)],
                 channels=["email"], sinks=["jsonl"])
    return [d.delivery_id for d in store.claim_due(datetime.now(UTC) + timedelta(minutes=1), 100)]


def test_mark_many_sent_marks_the_pending_rows_and_notifies_their_alerts(
        store_location: Path | str, make_failure: MakeFailure) -> None:
    """Rows marked together become sent at their own times; a person's channel makes the alert notified; a row already sent is left alone."""
    with AlertStore(store_location) as store:
        ids = _pending(store, make_failure, clients=3)
        assert len(ids) == 6  # e-mail and jsonl for each of three alerts
        first = ids[0]
        assert store.mark_sent(first, T0)
        times = {delivery_id: T0 + timedelta(seconds=n) for n, delivery_id in enumerate(ids)}
        assert store.mark_many_sent(times) == set(ids) - {first}
        alerts = store.list_alerts()
    deliveries = {d.delivery_id: d for alert in alerts for d in alert.deliveries}
    assert all(d.status == "sent" and d.attempts == 1 for d in deliveries.values())
    assert deliveries[first].sent_at == T0
    assert all(deliveries[d].sent_at == times[d] for d in ids[1:])
    assert all(alert.status == "notified" for alert in alerts)  # each had an e-mail sent
    assert store.mark_many_sent({}) == set()


async def test_marks_that_wait_together_share_one_commit(tmp_path: Path, make_failure: MakeFailure) -> None:
    """Marks made while a group is being written go in the next group: ten marks take two commits, each answered."""
    with AlertStore(tmp_path / "alerts.db") as store:
        ids = _pending(store, make_failure, clients=5)
        groups: list[int] = []
        write = store.mark_many_sent

        def counted(sent: dict[int, datetime]) -> set[int]:
            groups.append(len(sent))
            return write(sent)

        store.mark_many_sent = counted  # type: ignore[method-assign]
        marks = SentMarks(store, retry_seconds=5)
        try:
            results = await asyncio.gather(*(marks.mark(d, T0) for d in ids))
        finally:
            await marks.close()
        assert results == [True] * len(ids)
        assert sum(groups) == len(ids) and len(groups) <= 2
        assert store.pending_count() == 0
