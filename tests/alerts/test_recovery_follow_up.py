"""Recovery follow-ups: one per decided watch, to a manager who opted in, once across instances."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from monitor.alerts.delivery.channels import EmailChannel, JsonLinesChannel
from monitor.alerts.delivery.worker import DeliveryWorker
from monitor.alerts.messages.alert import AlertMessage
from monitor.alerts.messages.recovery import render_follow_up, render_follow_up_delivery
from monitor.alerts.store import AlertStore, RecoveryMatch
from monitor.domain import Manager, VipFailure
from monitor.ids import follow_up_id_for
from monitor.testing.smtp import SmtpSink

ANA_RM = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example",
                 timezone="Europe/Lisbon", recovery_follow_up=True)
FAILED_AT = datetime(2026, 12, 7, 14, 2, tzinfo=UTC)


@pytest.fixture
def store(store_location: Path | str) -> Iterator[AlertStore]:
    """A fresh alert store (a SQLite file or a PostgreSQL schema)."""
    with AlertStore(store_location) as opened:
        yield opened


def record_alert(store: AlertStore, make_failure: Callable[..., VipFailure],
                 manager: Manager = ANA_RM, event_id: str = "ev-1") -> str:
    """Record a failed withdrawal of Ana Silva at ATM-0017 (Lisbon), watched; return its ID."""
    [alert_id] = store.record(
        [make_failure(event_id, FAILED_AT, manager=manager, customer_name="Ana Silva",
                      terminal_id="ATM-0017", city="Lisbon")],
        now=FAILED_AT, recovery_window_seconds=1800).new_alert_ids
    for delivery in store.claim_due(FAILED_AT + timedelta(seconds=1)):  # the alert's own messages
        store.mark_sent(delivery.delivery_id, FAILED_AT + timedelta(seconds=1))
    return alert_id


def decide(store: AlertStore, alert_id: str, status: str, *,
           recovered_after: timedelta = timedelta(minutes=4), terminal: str = "ATM-0042") -> None:
    """Decide the alert's recovery watch through the store, as the watch's core does."""
    if status == "recovered":
        store.mark_recovered([RecoveryMatch(alert_id=alert_id,
                                            recovered_at=FAILED_AT + recovered_after,
                                            event_id="ev-ok", terminal_id=terminal)],
                             now=FAILED_AT + recovered_after)
    else:
        later = FAILED_AT + timedelta(minutes=31)
        store.abandon_watches(later, now=later)


def follow_up_of(store: AlertStore, alert_id: str) -> int:
    """The watch's ``follow_up`` column (0 not looked at, 1 queued, 2 not sent)."""
    with store._transaction() as conn:
        return int(conn.execute("SELECT follow_up FROM alert_recoveries WHERE alert_id = ?",
                                (alert_id,)).fetchone()[0])


def render(store: AlertStore, alert_id: str, manager: Manager) -> AlertMessage:
    """The follow-up of the alert's decided watch, rendered for ``manager``."""
    alert, recovery = store.get_alert(alert_id), store.recovery_of(alert_id)
    assert alert is not None and recovery is not None
    return render_follow_up(alert, recovery, manager, city="Lisbon")


def test_a_decided_watch_queues_one_follow_up_to_the_manager_and_the_recording_sinks(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """Recovered, opted in: an e-mail and a jsonl row, follow_up = 1; a second pass adds none."""
    alert_id = record_alert(store, make_failure)
    decide(store, alert_id, "recovered")
    managers = {ANA_RM.manager_id: ANA_RM}
    now = FAILED_AT + timedelta(minutes=5)
    assert store.queue_recovery_follow_ups(now, managers=managers,
                                           sinks=("jsonl", "alertmanager")) == 1
    assert follow_up_of(store, alert_id) == 1
    assert store.queue_recovery_follow_ups(now, managers=managers, sinks=("jsonl",)) == 0
    due = store.claim_due(now)
    assert sorted((d.alert_id, d.channel) for d in due) == [
        (follow_up_id_for(alert_id), "email"), (follow_up_id_for(alert_id), "jsonl")]


def test_a_watch_still_watching_is_left_alone(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """A watch not decided yet gets no follow-up and keeps follow_up = 0."""
    alert_id = record_alert(store, make_failure)
    assert store.queue_recovery_follow_ups(FAILED_AT + timedelta(minutes=5),
                                           managers={ANA_RM.manager_id: ANA_RM}) == 0
    assert follow_up_of(store, alert_id) == 0
    assert store.pending_count() == 0


@pytest.mark.parametrize("manager", [
    replace(ANA_RM, recovery_follow_up=False),  # did not opt in
    replace(ANA_RM, email=None),  # opted in, but no channel reaches them
    None,  # no longer in the registry
], ids=["not-opted-in", "no-channel", "not-in-registry"])
def test_no_follow_up_when_the_manager_did_not_opt_in_or_cannot_be_reached(
    store: AlertStore, make_failure: Callable[..., VipFailure], manager: Manager | None
) -> None:
    """Nothing is queued and follow_up = 2 (not sent), so later passes never look at it again."""
    alert_id = record_alert(store, make_failure)
    decide(store, alert_id, "abandoned")
    managers = {} if manager is None else {manager.manager_id: manager}
    now = FAILED_AT + timedelta(minutes=31)
    assert store.queue_recovery_follow_ups(now, managers=managers, sinks=("jsonl",)) == 0
    assert follow_up_of(store, alert_id) == 2
    assert store.claim_due(now) == []


def test_two_instances_racing_queue_one_follow_up(
    store_location: Path | str, make_failure: Callable[..., VipFailure]
) -> None:
    """Two stores on one database, eight threads at once: one follow-up, one e-mail row."""
    with AlertStore(store_location) as first, AlertStore(store_location) as second:
        alert_id = record_alert(first, make_failure)
        decide(first, alert_id, "recovered")
        barrier = threading.Barrier(8)
        results: list[int] = []
        now = FAILED_AT + timedelta(minutes=5)

        def run(instance: AlertStore) -> None:
            barrier.wait()
            results.append(instance.queue_recovery_follow_ups(
                now, managers={ANA_RM.manager_id: ANA_RM}))

        threads = [threading.Thread(target=run, args=(s,)) for s in (first, second) * 4]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == [0] * 7 + [1]
        due = second.claim_due(now)
        assert [(d.alert_id, d.channel) for d in due] == [(follow_up_id_for(alert_id), "email")]


def test_an_outbox_row_of_a_follow_up_needs_its_recovery_watch(store_location: Path | str) -> None:
    """The outbox's parent check accepts rf- rows only for an alert with a recovery watch."""
    AlertStore(store_location).close()
    insert = ("INSERT INTO deliveries (alert_id, channel, status, next_attempt_at, created_at, "
              "updated_at) VALUES ('rf-nothingnothingnothi', 'email', 'pending', 'x', 'x', 'x')")
    if isinstance(store_location, Path):
        with sqlite3.connect(store_location) as conn, pytest.raises(
                sqlite3.IntegrityError, match="a delivery needs an alert"):
            conn.execute(insert)
    else:
        with psycopg.connect(store_location) as conn, pytest.raises(
                psycopg.errors.ForeignKeyViolation):
            conn.execute(insert)


async def test_the_follow_up_reaches_the_manager_over_smtp_and_the_jsonl_sink_records_it(
    store: AlertStore, make_failure: Callable[..., VipFailure], tmp_path: Path
) -> None:
    """The worker e-mails it (client, terminals, delay, no card); the jsonl sink records it."""
    alert_id = record_alert(store, make_failure)
    decide(store, alert_id, "recovered")
    now = FAILED_AT + timedelta(minutes=5)
    store.queue_recovery_follow_ups(now, managers={ANA_RM.manager_id: ANA_RM}, sinks=("jsonl",))
    results: list[tuple[str, str]] = []
    with SmtpSink() as sink:
        channels = {"email": EmailChannel(sink.host, sink.port, sender="cardmon@bank.example",
                                          timeout=5),
                    "jsonl": JsonLinesChannel(tmp_path / "alerts.jsonl")}
        worker = DeliveryWorker(store, channels,
                                on_result=lambda kind, status, _s: results.append((kind, status)))
        assert await worker.deliver_due() == 2
        [(recipients, message)] = sink.messages()
    assert recipients == ["claire.martin@bank.example"]
    assert message["Subject"] == "[RECOVERED] Ana Silva completed the cash withdrawal"
    body = message.get_content().replace("\r\n", "\n")
    assert ("Ana Silva completed the cash withdrawal at ATM-0042 (another terminal), 4 minutes "
            "after the failure at ATM-0017 (Lisbon).") in body
    assert "Completed at 14:06 WET." in body
    assert "411111" not in body and "tok_" not in body
    [line] = (tmp_path / "alerts.jsonl").read_text().splitlines()
    recorded = json.loads(line)
    assert recorded["schema"] == "cardmon.recovery.v1" and recorded["result"] == "recovered"
    assert recorded["alert_id"] == alert_id and recorded["same_terminal"] is False
    assert sorted(results) == [("email", "sent"), ("jsonl", "sent")]  # counted like any message
    assert store.state_of(alert_id) == "notified"  # the follow-up leaves the alert's state alone


def test_an_abandoned_watch_reads_no_successful_transaction_and_suggests_a_call(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """Abandoned: "no successful cash withdrawal in the 30 minutes after the failure"."""
    alert_id = record_alert(store, make_failure)
    decide(store, alert_id, "abandoned")
    message = render(store, alert_id, ANA_RM)
    assert message.subject == ("[NO RECOVERY] Ana Silva: no successful cash withdrawal after "
                               "the failure")
    assert ("Ana Silva made no successful cash withdrawal in the 30 minutes after the failure at "
            "ATM-0017 (Lisbon): consider calling them.") in message.text


def abandoned_purchase_and_withdrawal(store: AlertStore,
                                      make_failure: Callable[..., VipFailure]) -> str:
    """Record a failed POS purchase, then a failed ATM withdrawal, in one alert; abandon its watch."""
    ana = {"manager": ANA_RM, "customer_name": "Ana Silva", "city": "Lisbon"}
    [alert_id] = store.record(
        [make_failure("ev-pos", FAILED_AT, channel="POS", txn_type="purchase",
                      terminal_id="POS-0009", **ana),
         make_failure("ev-atm", FAILED_AT + timedelta(minutes=1), terminal_id="ATM-0017", **ana)],
        now=FAILED_AT + timedelta(minutes=1), recovery_window_seconds=1800).new_alert_ids
    for delivery in store.claim_due(FAILED_AT + timedelta(minutes=2)):  # the alert's own messages
        store.mark_sent(delivery.delivery_id, FAILED_AT + timedelta(minutes=2))
    later = FAILED_AT + timedelta(minutes=32)
    store.abandon_watches(later, now=later)
    return alert_id


@pytest.mark.parametrize(("locale", "subject", "expected"), [
    ("en", ("[NO RECOVERY] Ana Silva: no successful purchase at a card terminal or cash "
           "withdrawal at an ATM after the failures"),
     ("Ana Silva made no successful purchase at a card terminal or cash withdrawal at an ATM in "
     "the 30 minutes after the last failure (the first was at POS-0009 (Lisbon)): consider "
     "calling them.")),
    ("fr", ("[NO RECOVERY] Ana Silva : aucune opération réussie (achat sur un terminal de "
           "paiement ou retrait d’espèces à un DAB) après les échecs"),
     ("Ana Silva n’a réussi aucune opération (achat sur un terminal de paiement ou retrait "
     "d’espèces à un DAB) dans les 30 minutes qui ont suivi le dernier échec (le premier à "
     "POS-0009 (Lisbon)) : pensez à l’appeler.")),
    ("zh-Hans", "[NO RECOVERY] Ana Silva：多次失败后没有成功的刷卡终端消费或ATM 取现",
     ("Ana Silva 在最后一次失败后的 30 分钟内没有成功的刷卡终端消费或ATM 取现"
     "（首次失败在 POS-0009 (Lisbon)）：建议致电客户。")),
], ids=["en", "fr", "zh-Hans"])
def test_an_abandoned_watch_of_two_kinds_names_both(
    store: AlertStore, make_failure: Callable[..., VipFailure], locale: str, subject: str,
    expected: str
) -> None:
    """A client who failed a purchase and a withdrawal and did neither: the follow-up names both kinds."""
    alert_id = abandoned_purchase_and_withdrawal(store, make_failure)
    manager = replace(ANA_RM, locale=locale)
    assert store.queue_recovery_follow_ups(FAILED_AT + timedelta(minutes=32),
                                           managers={ANA_RM.manager_id: manager}) == 1
    [delivery] = [d for d in store.claim_due(FAILED_AT + timedelta(minutes=32))
                  if d.alert_id == follow_up_id_for(alert_id)]
    message = render_follow_up_delivery(store, delivery, locale_of=lambda _id: locale)
    assert message.subject == subject
    assert expected in message.text
    assert message.payload["failed_kinds"] == [{"channel": "POS", "txn_type": "purchase"},
                                               {"channel": "ATM", "txn_type": "withdrawal"}]


@pytest.mark.parametrize(("locale", "expected"), [
    ("fr", ("Ana Silva a réussi l’opération (retrait d’espèces) à ATM-0017 (Lisbon), "
           "le même terminal, 4 minutes après l’échec.")),
    ("zh-Hans", ("Ana Silva 在 ATM-0017 (Lisbon)（同一终端）"
                "完成了取现，距失败4 分钟。")),
])
def test_the_follow_up_is_written_in_the_managers_language(
    store: AlertStore, make_failure: Callable[..., VipFailure], locale: str, expected: str
) -> None:
    """French and Simplified Chinese managers read the follow-up in their language."""
    alert_id = record_alert(store, make_failure)
    decide(store, alert_id, "recovered", terminal="ATM-0017")
    message = render(store, alert_id, replace(ANA_RM, locale=locale))
    assert expected in message.text


def test_a_follow_up_that_failed_for_good_can_be_resent_by_its_id(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """`cardmon alerts resend rf-…` re-queues the failed follow-up; the alert is untouched."""
    alert_id = record_alert(store, make_failure)
    decide(store, alert_id, "recovered")
    now = FAILED_AT + timedelta(minutes=5)
    store.queue_recovery_follow_ups(now, managers={ANA_RM.manager_id: ANA_RM})
    [row] = store.claim_due(now)
    assert store.mark_failed(row.delivery_id, "SMTPServerDisconnected")
    resent = store.resend(follow_up_id_for(alert_id), by="Ops Desk", via="cli", at=now)
    assert (resent.deliveries, resent.alert_ids) == (1, ())
    assert [d.alert_id for d in store.claim_due(now)] == [follow_up_id_for(alert_id)]
    assert store.state_of(alert_id) == "notified"


def test_a_late_alert_gets_no_follow_up(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """An alert recorded late (stale events replayed, paged to nobody) gets no follow-up either."""
    [alert_id] = store.record(
        [make_failure("ev-old", FAILED_AT, manager=ANA_RM, customer_name="Ana Silva",
                      terminal_id="ATM-0017", city="Lisbon")],
        now=FAILED_AT + timedelta(hours=3), stale_after_seconds=600,
        recovery_window_seconds=1800).new_alert_ids
    decide(store, alert_id, "recovered")
    now = FAILED_AT + timedelta(hours=3, minutes=1)
    assert store.queue_recovery_follow_ups(now, managers={ANA_RM.manager_id: ANA_RM}) == 0
    assert follow_up_of(store, alert_id) == 2
    assert [d for d in store.claim_due(now) if d.alert_id.startswith("rf-")] == []


def test_a_resolved_alert_gets_no_follow_up(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """A manager who resolved the alert before the decision is not told to call the client: follow_up = 2."""
    alert_id = record_alert(store, make_failure)
    store.acknowledge(alert_id, by="RM-017", via="workspace", at=FAILED_AT + timedelta(minutes=2))
    store.resolve(alert_id, by="RM-017", via="workspace", note="she got cash at the counter",
                  outcome="called_client", at=FAILED_AT + timedelta(minutes=10))
    decide(store, alert_id, "abandoned")
    now = FAILED_AT + timedelta(minutes=31)
    assert store.queue_recovery_follow_ups(now, managers={ANA_RM.manager_id: ANA_RM}) == 0
    assert follow_up_of(store, alert_id) == 2
    assert [d for d in store.claim_due(now) if d.alert_id.startswith("rf-")] == []


def test_a_follow_up_never_arrives_in_quiet_hours_or_before_its_alert(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """An alert held by quiet hours until 07:00: its follow-up, decided at night, is due then too, not before."""
    quiet = replace(ANA_RM, quiet_hours="Mo-Su 21:00-07:00")  # Lisbon: UTC in December
    at = datetime(2026, 12, 7, 21, 30, tzinfo=UTC)
    [alert_id] = store.record(
        [make_failure("ev-night", at, manager=quiet, severity="medium", customer_name="Ana Silva",
                      terminal_id="ATM-0017", city="Lisbon")],
        now=at, recovery_window_seconds=1800, managers={quiet.manager_id: quiet}).new_alert_ids
    later = at + timedelta(minutes=31)
    store.abandon_watches(later, now=later)
    assert store.queue_recovery_follow_ups(later, managers={quiet.manager_id: quiet}) == 1
    assert [d for d in store.claim_due(later) if d.alert_id.startswith("rf-")] == []
    morning = datetime(2026, 12, 8, 7, 0, 1, tzinfo=UTC)
    due = store.claim_due(morning)
    assert [d.alert_id for d in due if d.channel == "email"] == [alert_id, follow_up_id_for(alert_id)]


def test_a_recovery_under_a_minute_reads_less_than_a_minute(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """Recovered 45 s after the failure: "less than a minute after", as the workspace page says, not "1 minute"."""
    alert_id = record_alert(store, make_failure)
    decide(store, alert_id, "recovered", recovered_after=timedelta(seconds=45))
    message = render(store, alert_id, ANA_RM)
    assert ("Ana Silva completed the cash withdrawal at ATM-0042 (another terminal), less than a "
            "minute after the failure at ATM-0017 (Lisbon).") in message.text
