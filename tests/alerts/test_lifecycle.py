"""Alert lifecycle: states, history, schema migration, acknowledgement, escalation and the CLI."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from monitor.alerts.delivery.channels import EmailChannel
from monitor.alerts.delivery.links import AckLinks
from monitor.alerts.jobs import escalate_due
from monitor.alerts.lifecycle import EscalationPolicy, EscalationRulesError
from monitor.alerts.messages.alert import render_delivery
from monitor.alerts.states import AlertNotFoundError, StateConflictError
from monitor.alerts.store import AlertStore
from monitor.alerts.store.schema import SCHEMA_VERSION
from monitor.cli import app as cli_app
from monitor.domain import Manager, VipFailure

T0 = datetime(2024, 5, 6, 12, 1, 30, tzinfo=UTC)
RECORDED = T0 + timedelta(seconds=30)
V1_DUMP = Path(__file__).parent / "data" / "store_v1.sql"
REPO_RULES = Path(__file__).resolve().parents[2] / "rules" / "alerting.yaml"

OWN = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example",
              backup_manager_id="RM-042", timezone="Europe/Paris")
BACKUP = Manager(manager_id="RM-042", name="Jonas Weber", email="jonas.weber@bank.example",
                 timezone="Europe/Berlin")
LEAD = Manager(manager_id="RM-900", name="Ines Duarte", email="ines.duarte@bank.example",
               timezone="Europe/Lisbon")
MANAGERS = {m.manager_id: m for m in (OWN, BACKUP, LEAD)}
RULES = EscalationPolicy.from_mapping({
    "severities": ["high"],
    "steps": [{"after_seconds": 900, "to": "backup_manager"},
              {"after_seconds": 1800, "to": "team_lead", "team_lead_id": "RM-900"}],
})


@pytest.fixture
def store(store_location: Path | str) -> Iterator[AlertStore]:
    """A fresh alert store (a SQLite file or a PostgreSQL schema)."""
    with AlertStore(store_location) as opened:
        yield opened


def _record(store: AlertStore, make_failure: Callable[..., VipFailure], **overrides: object) -> str:
    result = store.record([make_failure("ev-1", T0, manager=OWN, **overrides)], now=RECORDED)
    return result.new_alert_ids[0]


def _history(store: AlertStore, alert_id: str) -> list[tuple[str, str | None, str, str, str]]:
    return [(h.action, h.from_state, h.to_state, h.actor, h.via) for h in store.history(alert_id)]


def test_a_new_alert_is_open_with_an_opened_history_row(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """Recording a new alert puts it in state open with one 'opened' row by cardmon via the pipeline."""
    alert_id = _record(store, make_failure)
    assert store.state_of(alert_id) == "open"
    [entry] = store.history(alert_id)
    assert (entry.action, entry.from_state, entry.to_state, entry.actor, entry.via) == (
        "opened", None, "open", "cardmon", "pipeline")
    assert entry.at == RECORDED


def test_sending_notifies_and_acknowledge_then_resolve_is_recorded_with_who_and_how(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """A sent delivery makes the alert notified; ack and resolve move it on, each with who, channel and note."""
    alert_id = _record(store, make_failure)
    [delivery] = store.claim_due(RECORDED)
    assert store.mark_sent(delivery.delivery_id, RECORDED + timedelta(seconds=2))
    assert store.state_of(alert_id) == "notified"
    ack = store.acknowledge(alert_id, by="RM-017", via="link", note="calling the client",
                            at=RECORDED + timedelta(minutes=5))
    assert (ack.changed, ack.state) == (True, "acknowledged")
    done = store.resolve(alert_id, by="RM-017", via="api", note="client used another card",
                         at=RECORDED + timedelta(minutes=9))
    assert (done.changed, done.state) == (True, "resolved")
    assert _history(store, alert_id) == [
        ("opened", None, "open", "cardmon", "pipeline"),
        ("notified", "open", "notified", "RM-017", "email"),
        ("acknowledged", "notified", "acknowledged", "RM-017", "link"),
        ("resolved", "acknowledged", "resolved", "RM-017", "api"),
    ]
    notes = [h.note for h in store.history(alert_id)]
    assert notes[2:] == ["calling the client", "client used another card"]
    assert store.history(alert_id)[3].at == RECORDED + timedelta(minutes=9)


def test_acknowledging_twice_is_one_transition(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """A second acknowledgement changes nothing and writes no history row."""
    alert_id = _record(store, make_failure)
    assert store.acknowledge(alert_id, by="RM-017", via="api").changed
    again = store.acknowledge(alert_id, by="Ops Desk", via="cli")
    assert (again.changed, again.state, again.entry) == (False, "acknowledged", None)
    assert [h.action for h in store.history(alert_id)] == ["opened", "acknowledged"]


def test_resolving_before_acknowledging_is_a_conflict(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """Resolving an unacknowledged alert raises StateConflictError and leaves it as it was."""
    alert_id = _record(store, make_failure)
    with pytest.raises(StateConflictError, match="acknowledge it before resolving") as caught:
        store.resolve(alert_id, by="RM-017", via="api", note="done")
    assert caught.value.state == "open"
    assert store.state_of(alert_id) == "open"
    assert [h.action for h in store.history(alert_id)] == ["opened"]


def test_unknown_alerts_and_empty_notes_are_refused(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """Acknowledging an unknown alert raises AlertNotFoundError; a resolution without a note is refused."""
    with pytest.raises(AlertNotFoundError):
        store.acknowledge("al-doesnotexist", by="RM-017", via="api")
    alert_id = _record(store, make_failure)
    store.acknowledge(alert_id, by="RM-017", via="api")
    with pytest.raises(ValueError, match="note"):
        store.resolve(alert_id, by="RM-017", via="api", note="  ")
    assert store.state_of(alert_id) == "acknowledged"


def test_a_pan_in_a_note_or_name_is_scrubbed_before_it_is_stored(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """A card number typed into a note never reaches the history; it is masked."""
    alert_id = _record(store, make_failure)
    store.acknowledge(alert_id, by="RM-017", via="api", note="client card 4111111111111111 blocked")
    note = store.history(alert_id)[-1].note or ""
    assert "4111111111111111" not in note
    assert "411111" in note and "1111" in note


def test_every_delivery_failing_marks_the_alert_failed_and_a_later_send_notifies(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """An open alert whose deliveries all failed is failed (with the last error); a later sent delivery makes it notified."""
    alert_id = _record(store, make_failure)
    [delivery] = store.claim_due(RECORDED)
    store.mark_failed(delivery.delivery_id, "SMTPConnectError: relay down")
    assert store.state_of(alert_id) == "failed"
    failed = store.history(alert_id)[-1]
    assert (failed.action, failed.via, failed.note) == ("failed", "email", "SMTPConnectError: relay down")
    assert store.enqueue_for_manager(alert_id, BACKUP, at=RECORDED) == 1
    [escalated] = store.claim_due(RECORDED + timedelta(seconds=1))
    store.mark_sent(escalated.delivery_id, RECORDED + timedelta(seconds=2))
    assert store.state_of(alert_id) == "notified"
    assert _history(store, alert_id)[-1] == ("notified", "failed", "notified", "RM-042", "email")


def test_a_version_1_store_is_upgraded_in_place(tmp_path: Path) -> None:
    """A store file written by schema-1 cardmon opens: alerts, deliveries and states survive, history is rebuilt."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_DUMP.read_text(encoding="utf-8"))
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1
    with AlertStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        alerts = {a.customer_id: a for a in store.list_alerts()}
        assert set(alerts) == {"C-1001", "C-2002", "C-3003"}
        sent, failed, pending = alerts["C-1001"], alerts["C-2002"], alerts["C-3003"]
        assert [store.state_of(a.alert_id) for a in (sent, failed, pending)] == [
            "notified", "failed", "open"]
        assert [(d.channel, d.status) for d in failed.deliveries] == [
            ("email", "failed"), ("webhook", "failed"), ("jsonl", "failed")]
        assert [h[:3] for h in _history(store, sent.alert_id)] == [
            ("opened", None, "open"), ("notified", "open", "notified"),
            ("notified", "notified", "notified")]
        assert _history(store, failed.alert_id)[-1][:3] == ("failed", "open", "failed")
        assert len(store.alert_events(sent.alert_id)) == 2
        # The upgraded outbox still sends what was pending, and new rows keep the old IDs' order.
        due = store.claim_due(datetime(2030, 1, 1, tzinfo=UTC))
        assert [(d.alert_id, d.channel) for d in due] == [
            (pending.alert_id, "email"), (pending.alert_id, "jsonl")]
        assert store.enqueue_for_manager(pending.alert_id, BACKUP) == 1
        newest = store.get_alert(pending.alert_id)
        assert newest is not None and newest.deliveries[-1].delivery_id == 8
    with AlertStore(path) as reopened:  # opening again is a no-op
        assert reopened.schema_version == SCHEMA_VERSION
        assert len(reopened.history(sent.alert_id)) == 3


def test_a_store_from_a_newer_cardmon_is_refused(tmp_path: Path) -> None:
    """A store whose schema version is above ours is not touched: opening it raises."""
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(sqlite3.DatabaseError, match="schema version 99"):
        AlertStore(path)


def test_the_repository_rules_escalate_high_alerts_to_the_backup_then_a_team_lead() -> None:
    """rules/alerting.yaml escalates high alerts to the backup at 15 min and a team lead at 30 min."""
    rules = EscalationPolicy.load(REPO_RULES)
    assert rules.severities == ("high",)
    assert [(s.after_seconds, s.to) for s in rules.steps] == [
        (900, "backup_manager"), (1800, "team_lead")]
    assert rules.steps[1].team_lead_id


@pytest.mark.parametrize(("section", "message"), [
    ({"severities": ["urgent"], "steps": []}, "severities"),
    ({"severities": ["high"], "steps": [{"after_seconds": 0, "to": "backup_manager"}]}, "positive"),
    ({"severities": ["high"], "steps": [{"after_seconds": 60, "to": "ceo"}]}, "'to'"),
    ({"severities": ["high"], "steps": [{"after_seconds": 60, "to": "team_lead"}]}, "team_lead_id"),
    ({"severities": ["high"], "steps": [{"after_seconds": 60, "to": "backup_manager"},
                                        {"after_seconds": 60, "to": "backup_manager"}]}, "later"),
])
def test_invalid_escalation_rules_are_refused(section: dict[str, object], message: str) -> None:
    """A bad severity, delay, target, missing team lead or non-increasing delay is refused by name."""
    with pytest.raises(EscalationRulesError, match=message):
        EscalationPolicy.from_mapping(section)


def test_an_unacknowledged_high_alert_escalates_to_the_backup_then_the_team_lead(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """Nothing happens before 15 min; at 15 min the backup gets deliveries, at 30 min the team lead."""
    alert_id = _record(store, make_failure)
    assert escalate_due(store, RECORDED + timedelta(seconds=899), RULES, MANAGERS) == []
    [first] = escalate_due(store, RECORDED + timedelta(seconds=900), RULES, MANAGERS)
    assert (first.alert_id, first.step, first.to, first.recipient_id, first.deliveries_enqueued) == (
        alert_id, 1, "backup_manager", "RM-042", 1)
    assert escalate_due(store, RECORDED + timedelta(seconds=1799), RULES, MANAGERS) == []
    [second] = escalate_due(store, RECORDED + timedelta(seconds=1800), RULES, MANAGERS)
    assert (second.step, second.to, second.recipient_id) == (2, "team_lead", "RM-900")
    assert store.delivery_recipients(alert_id) == {2: "RM-042", 3: "RM-900"}
    escalations = [h for h in store.history(alert_id) if h.action == "escalated"]
    assert [(h.at, h.via, h.to_state) for h in escalations] == [
        (RECORDED + timedelta(seconds=900), "escalation", "open"),
        (RECORDED + timedelta(seconds=1800), "escalation", "open")]
    assert "backup manager RM-042 (Jonas Weber)" in (escalations[0].note or "")
    assert "team lead RM-900 (Ines Duarte)" in (escalations[1].note or "")


def test_an_acknowledged_alert_does_not_escalate(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """Acknowledging within 15 min stops the chain: no step, no delivery, even an hour later."""
    alert_id = _record(store, make_failure)
    store.acknowledge(alert_id, by="RM-017", via="link", at=RECORDED + timedelta(minutes=14))
    assert escalate_due(store, RECORDED + timedelta(hours=1), RULES, MANAGERS) == []
    assert store.delivery_recipients(alert_id) == {}
    assert "escalated" not in [h.action for h in store.history(alert_id)]


def test_acknowledging_after_the_first_step_stops_the_second(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """An alert acknowledged between the backup step and the team-lead step never reaches the team lead."""
    alert_id = _record(store, make_failure)
    assert len(escalate_due(store, RECORDED + timedelta(minutes=15), RULES, MANAGERS)) == 1
    store.acknowledge(alert_id, by="RM-042", via="link", at=RECORDED + timedelta(minutes=20))
    assert escalate_due(store, RECORDED + timedelta(minutes=45), RULES, MANAGERS) == []
    assert set(store.delivery_recipients(alert_id).values()) == {"RM-042"}


def test_re_running_the_job_never_enqueues_twice(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """The same pass run again, or a late pass that catches up both steps, adds each step's rows once."""
    alert_id = _record(store, make_failure)
    late = RECORDED + timedelta(hours=2)
    assert [e.step for e in escalate_due(store, late, RULES, MANAGERS)] == [1, 2]
    assert escalate_due(store, late, RULES, MANAGERS) == []
    assert escalate_due(store, late + timedelta(hours=1), RULES, MANAGERS) == []
    # A second instance calling the store directly for a taken step is refused too.
    assert store.escalate(alert_id, 0, recipient=BACKUP, note="again", at=late) is None
    assert store.enqueue_for_manager(alert_id, BACKUP, at=late) == 0
    alert = store.get_alert(alert_id)
    assert alert is not None
    assert [d.channel for d in alert.deliveries] == ["email", "email", "email"]
    assert sorted(store.delivery_recipients(alert_id).values()) == ["RM-042", "RM-900"]


def test_low_severity_alerts_and_managers_without_a_backup_are_handled(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """A medium alert never escalates; a high alert whose manager has no backup records the step and notifies nobody."""
    medium = store.record([make_failure("ev-m", T0, manager=OWN, severity="medium",
                                        customer_id="C-2")], now=RECORDED).new_alert_ids[0]
    lonely = Manager(manager_id="RM-555", name="Sam Lone", email="sam.lone@bank.example")
    high = store.record([make_failure("ev-h", T0, manager=lonely, customer_id="C-3")],
                        now=RECORDED).new_alert_ids[0]
    taken = escalate_due(store, RECORDED + timedelta(minutes=16), RULES, {**MANAGERS, "RM-555": lonely})
    assert [(e.alert_id, e.recipient_id, e.deliveries_enqueued) for e in taken] == [(high, None, 0)]
    assert "no backup manager" in (store.history(high)[-1].note or "")
    assert store.history(medium)[-1].action == "opened"


async def test_the_backup_managers_escalation_mail_reaches_the_backups_mailbox(
    store: AlertStore, make_failure: Callable[..., VipFailure], smtp_server: Any
) -> None:
    """The escalated delivery is rendered for the backup (their address, ESCALATED, their ack link) and lands in their mailbox."""
    alert_id = _record(store, make_failure)
    now = RECORDED + timedelta(minutes=15)
    [own] = store.claim_due(RECORDED)
    store.mark_sent(own.delivery_id, RECORDED)
    escalate_due(store, now, RULES, MANAGERS)
    [row] = store.claim_due(now)
    links = AckLinks("s" * 32, "https://cardmon.bank.example")
    message = render_delivery(store, row, links=links)
    channel = EmailChannel(smtp_server.host, smtp_server.port, sender="cardmon@bank.example")
    await channel.send(message)
    store.mark_sent(row.delivery_id, now)

    assert smtp_server.mail.recipients == [["jonas.weber@bank.example"]]
    mail = smtp_server.mail.messages[0]
    assert mail["Subject"].startswith("[HIGH][ESCALATED] Ada Lovelace")
    body = mail.get_content()
    assert "Claire Martin has not acknowledged this alert" in body
    assert "CEST" in body  # the backup's own zone (Berlin, summer time)
    url = body.split("Acknowledge: ")[1].split()[0]
    assert url.startswith(f"https://cardmon.bank.example/alerts/{alert_id}/ack?token=")
    claim = links.verify(url.split("token=")[1], alert_id)
    assert claim.manager_id == "RM-042"
    assert message.idempotency_key == f"{alert_id}:email:RM-042"
    assert _history(store, alert_id)[-1] == ("notified", "notified", "notified", "RM-042", "email")


# -- cardmon alerts ack | resolve | list -----------------------------------------------------


def _cli(*args: str) -> Result:
    return CliRunner().invoke(cli_app, ["alerts", *args])


def _two_alerts(path: Path | str, make_failure: Callable[..., VipFailure]) -> tuple[str, str]:
    lonely = Manager(manager_id="RM-555", name="Sam Lone", email="sam.lone@bank.example")
    with AlertStore(path) as store:
        first = _record(store, make_failure)
        second = store.record([make_failure("ev-2", T0, manager=lonely, customer_id="C-2",
                                            customer_name="Grace Hopper")],
                              now=RECORDED + timedelta(minutes=1)).new_alert_ids[0]
    return first, second


def test_cli_ack_resolve_and_list_change_and_show_the_store(
    store_location: Path | str, make_failure: Callable[..., VipFailure]
) -> None:
    """`alerts ack`, `alerts resolve` and `alerts list` act on the store (file or PostgreSQL URL) and say what happened."""
    path = store_location
    first, second = _two_alerts(path, make_failure)
    db = ["--store", str(path)]

    acked = _cli("ack", first, "--by", "Ops Desk", "--note", "calling", *db)
    assert acked.exit_code == 0, acked.output
    assert acked.stdout.strip() == f"{first} acknowledged by Ops Desk"
    again = _cli("ack", first, "--by", "Someone", *db)
    assert (again.exit_code, again.stdout.strip()) == (
        0, f"{first} was already acknowledged; nothing changed")
    resolved = _cli("resolve", first, "--note", "client used another card", "--by", "RM-017", *db)
    assert (resolved.exit_code, resolved.stdout.strip()) == (0, f"{first} resolved by RM-017")

    listing = _cli("list", *db)
    assert listing.exit_code == 0, listing.output
    header, newest, oldest = listing.stdout.splitlines()
    assert header.split()[:5] == ["ALERT", "STATE", "DELIVERY", "SEVERITY", "MANAGER"]
    assert newest.split()[:5] == [second, "open", "pending", "high", "RM-555"]
    assert oldest.split()[:5] == [first, "resolved", "pending", "high", "RM-017"]
    assert "Ada Lovelace (C-1001)" in oldest and "2024-05-06 12:02:00" in oldest
    only_open = _cli("list", "--state", "open", *db).stdout.splitlines()
    assert [line.split()[0] for line in only_open[1:]] == [second]
    only_claire = _cli("list", "--manager", "RM-017", *db).stdout.splitlines()
    assert [line.split()[0] for line in only_claire[1:]] == [first]

    with AlertStore(path) as store:
        assert [(h.action, h.actor, h.via, h.note) for h in store.history(first)][1:] == [
            ("acknowledged", "Ops Desk", "cli", "calling"),
            ("resolved", "RM-017", "cli", "client used another card")]


def test_cli_refuses_unknown_alerts_early_resolution_and_missing_stores(
    tmp_path: Path, make_failure: Callable[..., VipFailure]
) -> None:
    """Unknown alert, resolve before ack and a missing store file exit 1 with a one-line reason and change nothing."""
    path = tmp_path / "alerts.db"
    first, _ = _two_alerts(path, make_failure)
    db = ["--store", str(path)]
    unknown = _cli("ack", "al-nope", "--by", "Ops Desk", *db)
    assert (unknown.exit_code, unknown.stderr.strip()) == (1, "no alert al-nope")
    early = _cli("resolve", first, "--note", "done", *db)
    assert early.exit_code == 1 and "acknowledge it before resolving" in early.stderr
    missing = _cli("list", "--store", str(tmp_path / "typo.db"))
    assert missing.exit_code == 1 and "no alert store at" in missing.stderr
    assert not (tmp_path / "typo.db").exists()
    with AlertStore(path) as store:
        assert store.state_of(first) == "open"


def test_cli_resolves_with_an_outcome_from_the_vocabulary(
    tmp_path: Path, make_failure: Callable[..., VipFailure]
) -> None:
    """`alerts resolve --outcome` records the outcome (a note optional); no outcome and no note, or an unknown outcome, exit 2."""
    from monitor.alerts.states import RESOLUTION_OUTCOMES
    from monitor.cli.alerts import Outcome

    assert tuple(o.value for o in Outcome) == RESOLUTION_OUTCOMES
    path = tmp_path / "alerts.db"
    first, _ = _two_alerts(path, make_failure)
    db = ["--store", str(path)]
    assert _cli("ack", first, "--by", "RM-017", *db).exit_code == 0
    neither = _cli("resolve", first, "--by", "RM-017", *db)
    assert neither.exit_code == 2 and "--outcome, --note or both" in neither.stderr
    unknown = _cli("resolve", first, "--outcome", "shrugged", *db)
    assert unknown.exit_code == 2
    resolved = _cli("resolve", first, "--outcome", "card_replaced", "--by", "RM-017", *db)
    assert (resolved.exit_code, resolved.stdout.strip()) == (0, f"{first} resolved by RM-017")
    with AlertStore(path) as store:
        last = store.history(first)[-1]
        assert (last.action, last.actor, last.via, last.outcome, last.note) == (
            "resolved", "RM-017", "cli", "card_replaced", None)


def test_export_carries_each_alerts_state_history_and_escalation_recipients(
    store: AlertStore, make_failure: Callable[..., VipFailure]
) -> None:
    """`alerts export` records hold the lifecycle state, every history row and who an escalated delivery went to."""
    import io
    import json

    from monitor.alerts.export import export_jsonl

    alert_id = _record(store, make_failure)
    escalate_due(store, RECORDED + timedelta(minutes=15), RULES, MANAGERS)
    store.acknowledge(alert_id, by="RM-042", via="link", note="I call her",
                      at=RECORDED + timedelta(minutes=16))
    out = io.StringIO()
    assert export_jsonl(store, out) == 1
    record = json.loads(out.getvalue())
    assert record["state"] == "acknowledged"
    assert [(d["channel"], d["recipient_id"]) for d in record["deliveries"]] == [
        ("email", None), ("email", "RM-042")]
    assert [(h["action"], h["by"], h["via"], h["at"]) for h in record["history"]] == [
        ("opened", "cardmon", "pipeline", "2024-05-06T12:02:00+00:00"),
        ("escalated", "cardmon", "escalation", "2024-05-06T12:17:00+00:00"),
        ("acknowledged", "RM-042", "link", "2024-05-06T12:18:00+00:00")]
    assert record["history"][2]["note"] == "I call her"
    assert "jonas.weber@bank.example" not in out.getvalue()
