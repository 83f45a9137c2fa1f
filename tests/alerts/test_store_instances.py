"""Several alert stores (instances) on one real PostgreSQL: every race is settled once."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import pytest

from monitor.alerts.store import AlertStore
from monitor.alerts.store.schema import SCHEMA_VERSION
from monitor.domain import Delivery, Manager, VipFailure
from tests.postgres import PostgresServer

T0 = datetime(2024, 5, 6, 12, 1, 30, tzinfo=UTC)
MakeFailure = Callable[..., VipFailure]
R = TypeVar("R")
BACKUP = Manager(manager_id="RM-042", name="Jonas Weber", email="jonas.weber@bank.example")

pytestmark = pytest.mark.integration


@pytest.fixture
def url(postgres: PostgresServer) -> str:
    """A new, empty alert store in the session's PostgreSQL."""
    return postgres.new_store_url()


@pytest.fixture
def stores(url: str) -> Iterator[list[AlertStore]]:
    """Four instances' stores: four connections to the same PostgreSQL store."""
    opened = [AlertStore(url) for _ in range(4)]
    yield opened
    for store in opened:
        store.close()


def _together(calls: list[Callable[[], R]]) -> list[R]:
    """Run the calls in threads released at the same instant; return their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], R]) -> R:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def _failures(make_failure: MakeFailure, clients: int, per_client: int) -> list[VipFailure]:
    return [make_failure(f"ev-{c}-{i}", T0 + timedelta(seconds=10 * i), customer_id=f"C-{c:03d}")
            for c in range(clients) for i in range(per_client)]


def test_concurrent_claims_never_hand_one_row_to_two_instances(
    stores: list[AlertStore], make_failure: MakeFailure
) -> None:
    """Four instances claiming the same due rows at once, in small batches, get every row exactly once."""
    now = datetime.now(UTC)
    stores[0].record(_failures(make_failure, 150, 1), sinks=["jsonl"], now=now)  # 300 outbox rows

    def drain(store: AlertStore) -> Callable[[], list[Delivery]]:
        def claim_all() -> list[Delivery]:
            claimed: list[Delivery] = []
            while batch := store.claim_due(now, 7):
                claimed.extend(batch)
            return claimed
        return claim_all

    results = _together([drain(store) for store in stores])
    counts = Counter(d.delivery_id for claimed in results for d in claimed)
    assert len(counts) == 300 and set(counts.values()) == {1}
    assert sum(1 for claimed in results if claimed) >= 2  # the instances really competed


def test_two_instances_recording_the_same_failures_make_one_alert(
    stores: list[AlertStore], make_failure: MakeFailure
) -> None:
    """The same batch recorded by two instances at once (a rebalance replay) gives one alert per client, once."""
    failures = _failures(make_failure, 20, 5)
    first, second = _together([lambda: stores[0].record(failures, sinks=["jsonl"]),
                               lambda: stores[1].record(list(reversed(failures)), sinks=["jsonl"])])
    assert first.events_inserted + second.events_inserted == 100
    assert first.events_duplicate + second.events_duplicate == 100
    assert sorted(first.new_alert_ids + second.new_alert_ids) == sorted(
        a.alert_id for a in stores[2].list_alerts())
    alerts = stores[2].list_alerts()
    assert len(alerts) == 20
    assert {a.event_count for a in alerts} == {5}
    assert {tuple(d.channel for d in a.deliveries) for a in alerts} == {("email", "jsonl")}
    assert all([h.action for h in stores[3].history(a.alert_id)] == ["opened"] for a in alerts)


def test_instances_adding_events_to_shared_alerts_in_any_order_neither_deadlock_nor_lose_counts(
    stores: list[AlertStore], make_failure: MakeFailure, caplog: pytest.LogCaptureFixture
) -> None:
    """Four instances add different events to the same 30 alerts at once, in opposite orders: every event counts, no deadlock."""
    def batch(instance: int) -> list[VipFailure]:
        failures = [make_failure(f"ev-{instance}-{c}-{i}", T0 + timedelta(seconds=instance * 20 + i),
                                 customer_id=f"C-{c:03d}", severity="low" if instance else "high")
                    for c in range(30) for i in range(3)]
        return failures if instance % 2 else list(reversed(failures))

    for _ in range(3):
        _together([lambda s=store, n=n: s.record(batch(n)) for n, store in enumerate(stores)])
    alerts = stores[0].list_alerts()
    assert len(alerts) == 30
    assert {a.event_count for a in alerts} == {12}
    assert {a.severity for a in alerts} == {"high"}
    assert {(a.first_event_at, a.last_event_at) for a in alerts} == {(T0, T0 + timedelta(seconds=62))}
    assert "trying again" not in caplog.text  # no transaction was aborted to break a deadlock


def test_concurrent_starts_on_an_empty_database_create_the_schema_once(url: str) -> None:
    """Four instances starting at once on an empty database all open the same store."""
    opened = _together([lambda: AlertStore(url) for _ in range(4)])
    try:
        assert {store.schema_version for store in opened} == {SCHEMA_VERSION}
    finally:
        for store in opened:
            store.close()


def _pending_change(url: str, sql: str, *params: Any) -> psycopg.Connection[Any]:
    """Open a transaction that changes a row like another instance mid-transaction, and leave it open."""
    conn = psycopg.connect(url)
    conn.execute(sql, params)
    return conn


def _blocked(call: Callable[[], R]) -> tuple[threading.Thread, list[R]]:
    results: list[R] = []
    thread = threading.Thread(target=lambda: results.append(call()))
    thread.start()
    thread.join(0.5)
    assert thread.is_alive(), "the call did not wait for the other instance's row lock"
    return thread, results


def test_a_send_marked_during_an_acknowledgement_never_reopens_the_alert(
    stores: list[AlertStore], url: str, make_failure: MakeFailure
) -> None:
    """An instance marking a delivery sent while another acknowledges the alert leaves it acknowledged."""
    now = datetime.now(UTC)
    (alert_id,) = stores[0].record([make_failure("ev-1", T0)], now=now).new_alert_ids
    (delivery,) = stores[0].claim_due(now)
    other = _pending_change(url, "UPDATE alerts SET state = 'acknowledged' WHERE alert_id = %s", alert_id)
    thread, marked = _blocked(lambda: stores[1].mark_sent(delivery.delivery_id, now))
    other.commit()
    other.close()
    thread.join(10)
    assert marked == [True]
    assert stores[2].state_of(alert_id) == "acknowledged"
    assert [(h.action, h.from_state, h.to_state) for h in stores[2].history(alert_id)][-1] == (
        "notified", "acknowledged", "acknowledged")


def test_an_escalation_racing_an_acknowledgement_is_not_taken(
    stores: list[AlertStore], url: str, make_failure: MakeFailure
) -> None:
    """An instance escalating while another acknowledges waits for it, then takes no step and sends nothing."""
    (alert_id,) = stores[0].record([make_failure("ev-1", T0)]).new_alert_ids
    other = _pending_change(url, "UPDATE alerts SET state = 'acknowledged' WHERE alert_id = %s", alert_id)
    thread, taken = _blocked(lambda: stores[1].escalate(alert_id, 0, recipient=BACKUP, note="step 1",
                                                        at=T0 + timedelta(minutes=15)))
    other.commit()
    other.close()
    thread.join(10)
    assert taken == [None]
    assert [d.channel for d in stores[2].get_alert(alert_id).deliveries] == ["email"]  # type: ignore[union-attr]


def test_instances_taking_the_same_escalation_step_take_it_once(
    stores: list[AlertStore], make_failure: MakeFailure
) -> None:
    """Four instances take step 0 of the same 20 alerts at once: one step and one backup delivery per alert."""
    ids = stores[0].record(_failures(make_failure, 20, 1)).new_alert_ids

    def escalate_all(store: AlertStore) -> Callable[[], list[int | None]]:
        return lambda: [store.escalate(alert_id, 0, recipient=BACKUP, note="step 1",
                                       at=T0 + timedelta(minutes=15)) for alert_id in ids]

    results = _together([escalate_all(store) for store in stores])
    for position, alert_id in enumerate(ids):
        assert sorted((r[position] for r in results), key=str) == [1, None, None, None]
        alert = stores[0].get_alert(alert_id)
        assert alert is not None and len(alert.deliveries) == 2
        assert [h.action for h in stores[0].history(alert_id)] == ["opened", "escalated"]


def test_instances_acknowledging_and_marking_the_same_alerts_keep_one_consistent_history(
    stores: list[AlertStore], make_failure: MakeFailure
) -> None:
    """Acknowledgements, resolutions and sends of the same alerts from four instances at once give one transition each."""
    now = datetime.now(UTC)
    ids = stores[0].record(_failures(make_failure, 20, 1), sinks=["jsonl"], now=now).new_alert_ids
    rows = stores[0].claim_due(now, 100)

    def ack(store: AlertStore) -> Callable[[], int]:
        return lambda: sum(store.acknowledge(a, by="RM-017", via="api").changed for a in ids)

    def send(store: AlertStore) -> Callable[[], int]:
        return lambda: sum(store.mark_sent(d.delivery_id, now) for d in rows)

    acked_1, acked_2, sent_1, sent_2 = _together([ack(stores[0]), ack(stores[1]),
                                                  send(stores[2]), send(stores[3])])
    assert acked_1 + acked_2 == 20 and sent_1 + sent_2 == 40
    resolved = _together([lambda s=s: sum(s.resolve(a, by="RM-017", via="api", note="called").changed
                                           for a in ids) for s in stores])
    assert sum(resolved) == 20
    for alert_id in ids:
        actions = Counter(h.action for h in stores[0].history(alert_id))
        # The e-mail notified the manager; the jsonl sink's acceptance is no notification.
        assert actions == {"opened": 1, "acknowledged": 1, "resolved": 1, "notified": 1}
        assert stores[0].state_of(alert_id) == "resolved"
