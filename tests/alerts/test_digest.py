"""Daily digests: due at the manager's local time, DST-safe, exactly once across instances, sent over SMTP."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from monitor.alerts.delivery.channels import EmailChannel
from monitor.alerts.delivery.worker import DeliveryWorker
from monitor.alerts.jobs import digests_due
from monitor.alerts.store import AlertStore, DigestRecord
from monitor.domain import Manager, VipFailure

from .conftest import SmtpServer

CLAIRE = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example",
                 timezone="Europe/Paris", digest_at=time(18, 0))
NO_DIGEST = Manager(manager_id="RM-042", name="Jonas Weber", email="jonas.weber@bank.example",
                    timezone="Europe/Berlin")
MONDAY_6PM = datetime(2026, 3, 30, 16, 0, tzinfo=UTC)  # 18:00 CEST, the day after spring forward


@pytest.fixture
def store(store_location: Path | str) -> Iterator[AlertStore]:
    """A fresh alert store (a SQLite file or a PostgreSQL schema)."""
    with AlertStore(store_location) as opened:
        yield opened


def _minutes(start: datetime, end: datetime) -> list[datetime]:
    return [start + timedelta(minutes=k) for k in range(int((end - start) / timedelta(minutes=1)) + 1)]


def _claims(store: AlertStore, manager: Manager, start: datetime, end: datetime) -> list[DigestRecord]:
    """Run the job every minute from ``start`` to ``end``; return every digest it claimed."""
    return [record for now in _minutes(start, end) for record in digests_due(store, now, [manager])]


def test_the_digest_is_due_at_the_managers_local_time_and_only_once(store: AlertStore) -> None:
    """At 17:59 Paris time nothing is due; at 18:00 the digest is claimed; a later pass that day claims nothing."""
    managers = {m.manager_id: m for m in (CLAIRE, NO_DIGEST)}
    assert digests_due(store, MONDAY_6PM - timedelta(minutes=1), managers) == []
    [record] = digests_due(store, MONDAY_6PM, managers)
    assert (record.manager_id, record.local_date) == ("RM-017", date(2026, 3, 30))
    assert record.period_end == MONDAY_6PM and record.period_start == MONDAY_6PM - timedelta(days=1)
    assert digests_due(store, MONDAY_6PM + timedelta(hours=5, minutes=59), managers) == []
    [tuesday] = digests_due(store, MONDAY_6PM + timedelta(days=1), managers)
    assert tuesday.period_start == MONDAY_6PM  # since the last digest


def test_a_0230_digest_on_the_spring_forward_day_is_sent_once_not_skipped(store: AlertStore) -> None:
    """On 29 March 2026 Paris skips 02:00-03:00: a 02:30 digest goes once, at 03:30 summer time (01:30 UTC)."""
    early = replace(CLAIRE, digest_at=time(2, 30))
    claims = _claims(store, early, datetime(2026, 3, 28, 23, 0, tzinfo=UTC), datetime(2026, 3, 29, 4, 0, tzinfo=UTC))
    assert [(c.local_date, c.period_end) for c in claims] == [
        (date(2026, 3, 29), datetime(2026, 3, 29, 1, 30, tzinfo=UTC))]


def test_a_0230_digest_on_the_fall_back_day_is_sent_once_not_twice(store: AlertStore) -> None:
    """On 25 October 2026 Paris lives 02:00-03:00 twice: a 02:30 digest goes once, at the first 02:30 (00:30 UTC)."""
    early = replace(CLAIRE, digest_at=time(2, 30))
    claims = _claims(store, early, datetime(2026, 10, 24, 22, 0, tzinfo=UTC), datetime(2026, 10, 25, 3, 0, tzinfo=UTC))
    assert [(c.local_date, c.period_end) for c in claims] == [
        (date(2026, 10, 25), datetime(2026, 10, 25, 0, 30, tzinfo=UTC))]
    # The next day's is at 02:30 winter time (01:30 UTC): 25 hours later.
    [next_day] = _claims(store, early, datetime(2026, 10, 26, 1, 0, tzinfo=UTC), datetime(2026, 10, 26, 2, 0, tzinfo=UTC))
    assert next_day.period_end == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)


def test_two_instances_racing_claim_one_digest(
    store_location: Path | str, make_failure: Callable[..., VipFailure]
) -> None:
    """Two stores on one SQLite file or PostgreSQL database run the job at the same instant from two threads: one digest, one outbox row."""
    path = store_location
    with AlertStore(path) as first, AlertStore(path) as second:
        first.record([make_failure("ev-1", MONDAY_6PM - timedelta(hours=3), manager=CLAIRE)],
                     now=MONDAY_6PM - timedelta(hours=3))
        for delivery in first.claim_due(MONDAY_6PM):  # the alert's own e-mail, already sent
            first.mark_sent(delivery.delivery_id, MONDAY_6PM)
        barrier = threading.Barrier(8)
        results: list[list[DigestRecord]] = []

        def run(instance: AlertStore) -> None:
            barrier.wait()
            results.append(digests_due(instance, MONDAY_6PM, [CLAIRE]))

        threads = [threading.Thread(target=run, args=(s,)) for s in (first, second) * 4]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        claimed = [record for result in results for record in result]
        assert len(claimed) == 1 and claimed[0].alert_count == 1
        due = second.claim_due(MONDAY_6PM + timedelta(minutes=5))
        assert [(d.alert_id, d.channel) for d in due] == [(claimed[0].digest_id, "email")]


def test_a_period_without_alerts_sends_nothing_and_an_away_manager_gets_no_digest(store: AlertStore) -> None:
    """No alert since the last digest: claimed but nothing queued; a manager on holiday is skipped altogether."""
    [empty] = digests_due(store, MONDAY_6PM, [CLAIRE])
    assert empty.alert_count == 0 and store.pending_count() == 0
    away = replace(CLAIRE, away_from=MONDAY_6PM, away_until=MONDAY_6PM + timedelta(days=7))
    assert digests_due(store, MONDAY_6PM + timedelta(days=1), [away]) == []


async def test_the_digest_reaches_the_manager_over_smtp_with_counts_clients_and_open_alerts(
    store: AlertStore, make_failure: Callable[..., VipFailure], smtp_server: SmtpServer
) -> None:
    """The 18:00 digest e-mail counts the day's alerts by severity and state, names the clients, lists unacknowledged ones."""
    day = MONDAY_6PM - timedelta(hours=8)
    store.record([make_failure("ev-0", day - timedelta(days=2), manager=CLAIRE,
                               customer_id="C-0", customer_name="Old Client")],
                 now=day - timedelta(days=2))  # before the period: not in the digest
    for event_id, customer_id, name, severity, hours in [
        ("ev-1", "C-1001", "Ada Lovelace", "high", 0),
        ("ev-2", "C-1001", "Ada Lovelace", "low", 1),
        ("ev-3", "C-2002", "Grace Hopper", "medium", 2),
    ]:
        at = day + timedelta(hours=hours)
        store.record([make_failure(event_id, at, manager=CLAIRE, customer_id=customer_id,
                                   customer_name=name, severity=severity)], now=at)
    alerts = {a.severity: a for a in store.list_alerts()}
    store.acknowledge(alerts["high"].alert_id, by="RM-017", via="api", at=day + timedelta(hours=3))
    for delivery in store.claim_due(MONDAY_6PM):  # the alerts' own e-mails, already sent
        store.mark_sent(delivery.delivery_id, MONDAY_6PM)

    [record] = digests_due(store, MONDAY_6PM, [CLAIRE, NO_DIGEST])
    assert record.alert_count == 3
    email = EmailChannel(smtp_server.host, smtp_server.port, sender="cardmon@bank.example", timeout=5)
    worker = DeliveryWorker(store, {"email": email})
    assert await worker.deliver_due() == 1
    assert await worker.deliver_due() == 0
    assert digests_due(store, MONDAY_6PM + timedelta(hours=1), [CLAIRE]) == []

    assert smtp_server.mail.recipients == [["claire.martin@bank.example"]]
    [message] = smtp_server.mail.messages
    assert message["Subject"] == ("[DIGEST] Claire Martin — Mon 30 Mar 2026: 3 alert(s) "
                                  "(high 1, medium 1, low 1), 2 unacknowledged")
    body = message.get_content().replace("\r\n", "\n")
    assert "Period:      Sun 29 Mar 2026, 18:00 CEST – Mon 30 Mar 2026, 18:00 CEST" in body
    assert "By severity: high 1 · medium 1 · low 1" in body
    assert "By state:    notified 2 · acknowledged 1" in body
    assert "Clients affected (2):" in body
    assert "  Ada Lovelace — private (client C-1001): 2 alert(s)" in body
    assert "  Grace Hopper — private (client C-2002): 1 alert(s)" in body
    assert "Old Client" not in body
    waiting = body.split("Not acknowledged yet (2), oldest first:\n")[1].splitlines()[:2]
    assert waiting == [
        f"  Mon 30 Mar 11:00 CEST  [LOW] Ada Lovelace (private): 1 failure(s), notified — alert {alerts['low'].alert_id}",
        f"  Mon 30 Mar 12:00 CEST  [MEDIUM] Grace Hopper (private): 1 failure(s), notified — alert {alerts['medium'].alert_id}",
    ]
    assert alerts["high"].alert_id not in body  # acknowledged: counted, not listed
    # The digest's delivery leaves the alerts' states and histories alone.
    assert store.state_of(alerts["high"].alert_id) == "acknowledged"
    assert [h.action for h in store.history(alerts["low"].alert_id)] == ["opened", "notified"]


def test_an_outbox_row_still_needs_an_alert_or_a_digest(store_location: Path | str) -> None:
    """The outbox keeps its referential check: a row naming no alert, digest or incident notice is refused."""
    import sqlite3

    import psycopg

    AlertStore(store_location).close()
    insert = ("INSERT INTO deliveries (alert_id, channel, status, next_attempt_at, created_at, "
              "updated_at) VALUES ('al-nothing', 'email', 'pending', 'x', 'x', 'x')")
    if isinstance(store_location, Path):
        with sqlite3.connect(store_location) as conn, pytest.raises(
                sqlite3.IntegrityError, match="a delivery needs an alert, a digest or a notice"):
            conn.execute(insert)
    else:
        with psycopg.connect(store_location) as pg, pytest.raises(
                psycopg.errors.ForeignKeyViolation, match="a delivery needs an alert, a digest or a notice"):
            pg.execute(insert)


async def test_a_digest_the_relay_refuses_is_retried_and_then_sent_once(
    store: AlertStore, make_failure: Callable[..., VipFailure], smtp_server: SmtpServer, unused_port: int
) -> None:
    """The relay is down at 18:00: the digest stays pending with the error, and the next pass delivers it once."""
    import asyncio

    store.record([make_failure("ev-1", MONDAY_6PM - timedelta(hours=2), manager=CLAIRE)],
                 now=MONDAY_6PM - timedelta(hours=2))
    for delivery in store.claim_due(MONDAY_6PM):
        store.mark_sent(delivery.delivery_id, MONDAY_6PM)
    [record] = digests_due(store, MONDAY_6PM, [CLAIRE])
    backoff = {"backoff_initial": 0.01, "backoff_max": 0.05, "backoff_jitter": 0.0}
    down = EmailChannel("127.0.0.1", unused_port, sender="cardmon@bank.example", timeout=2)
    assert await DeliveryWorker(store, {"email": down}, **backoff).deliver_due() == 0
    assert store.pending_count() == 1  # the digest's row, waiting for its retry
    await asyncio.sleep(0.1)
    up = EmailChannel(smtp_server.host, smtp_server.port, sender="cardmon@bank.example", timeout=5)
    worker = DeliveryWorker(store, {"email": up}, **backoff)
    assert await worker.deliver_due() == 1
    assert await worker.deliver_due() == 0
    assert store.pending_count() == 0
    [message] = smtp_server.mail.messages
    assert str(message["Subject"]).startswith("[DIGEST] Claire Martin — Mon 30 Mar 2026: 1 alert(s)")
    assert record.digest_id in message.get_content()
