"""Incidents in the alert store: linking, folding, one notice per manager, updates, all-clear."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.alerts.messages.incident_notice import render_notice_delivery
from monitor.alerts.store import AlertStore
from monitor.domain import Manager, VipFailure
from monitor.ids import is_notice_id
from monitor.incidents import IncidentChange, IncidentRules
from tests.alerts.conftest import _make_failure

NOW = datetime(2026, 11, 2, 9, 0, 30, tzinfo=UTC)
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
RULES = IncidentRules.model_validate({"group_wait_seconds": 15, "group_interval_seconds": 300,
                                      "scopes": {"terminal": {"min_failures": 5}}})
ANNA = Manager(manager_id="RM-1", name="Anna Berg", email="anna@bank.test", timezone="Europe/Berlin",
               notify_resolved=True)
LI = Manager(manager_id="RM-2", name="Li Wei", email="li@bank.test", timezone="Asia/Shanghai")
MANAGERS = {m.manager_id: m for m in (ANNA, LI)}


def opened(incident_id: str = "in-test", kind: str = "opened", **fields: object) -> IncidentChange:
    base: dict[str, object] = {"kind": kind, "incident_id": incident_id, "scope": "terminal",
                               "scope_key": "ATM-9", "started_at": T0, "last_failure_at": T0,
                               "failures": 5, "cards": 5, "terminals": 1}
    base.update(fields)
    return IncidentChange(**base)  # type: ignore[arg-type]


def outage(event_id: str, customer: str, manager: Manager, incident_id: str | None = "in-test",
           second: int = 0) -> VipFailure:
    failure = _make_failure(event_id, T0 + timedelta(seconds=second), customer_id=customer,
                            customer_name=f"Client {customer}", manager=manager,
                            terminal_id="ATM-9", response_code="91", outcome="technical",
                            response_meaning="Issuer or switch inoperative")
    return replace(failure, incident_id=incident_id)


@pytest.fixture
def store(store_location: Path | str) -> AlertStore:
    with AlertStore(store_location) as opened_store:
        yield opened_store


def due(store: AlertStore, at: datetime) -> list[tuple[str, str]]:
    return [(d.alert_id, d.channel) for d in store.claim_due(at, 100)]


def test_alerts_of_an_incident_make_one_notice_per_manager_due_after_group_wait(store: AlertStore) -> None:
    """Three clients of two managers in one incident: no per-alert message, one notice each, after group_wait."""
    result = store.record([outage("e1", "C1", ANNA), outage("e2", "C2", ANNA), outage("e3", "C3", LI)],
                          incidents=[opened()], incident_rules=RULES, now=NOW, managers=MANAGERS)
    assert len(result.new_alert_ids) == 3
    assert due(store, NOW + timedelta(seconds=14)) == []
    rows = due(store, NOW + timedelta(seconds=15))
    assert len(rows) == 2 and all(is_notice_id(alert_id) and channel == "email" for alert_id, channel in rows)
    incident = store.get_incident("in-test")
    assert incident is not None and (incident.alert_count, incident.manager_count) == (3, 2)


def test_a_held_outage_alert_is_folded_into_the_incident_that_opens_later(store: AlertStore) -> None:
    """An alert recorded before the incident opened waits group_wait, then is merged, not sent on its own."""
    store.record([outage("e1", "C1", ANNA, incident_id=None)], incident_rules=RULES, now=NOW,
                 managers=MANAGERS)
    alert = store.list_alerts()[0]
    assert [d.next_attempt_at for d in alert.deliveries] == [NOW + timedelta(seconds=15)]
    later = NOW + timedelta(seconds=5)
    store.record([outage("e2", "C1", ANNA, second=20)], incidents=[opened()], incident_rules=RULES,
                 now=later, managers=MANAGERS)
    alert = store.list_alerts()[0]
    assert [d.status for d in alert.deliveries] == ["merged"] and alert.status == "merged"
    assert store.incident_of(alert.alert_id) == "in-test"
    assert [a for a, _ in due(store, later + timedelta(seconds=15))] != []
    assert all(is_notice_id(a) for a, _ in due(store, later + timedelta(hours=1)))


def test_without_storm_control_an_outage_alert_goes_out_at_once(store: AlertStore) -> None:
    """No incident rules: no hold, no incident, the alert's own message is due now."""
    store.record([outage("e1", "C1", ANNA, incident_id="in-test")], now=NOW, managers=MANAGERS)
    assert [a.startswith("al-") for a, _ in due(store, NOW)] == [True]
    assert store.list_incidents() == []


def test_a_client_hit_after_the_notice_went_out_comes_in_one_update_per_group_interval(
        store: AlertStore) -> None:
    """After the first notice is sent, later clients of that manager wait for one update at group_interval."""
    store.record([outage("e1", "C1", ANNA)], incidents=[opened()], incident_rules=RULES, now=NOW,
                 managers=MANAGERS)
    [first] = store.claim_due(NOW + timedelta(seconds=15), 10)
    assert store.mark_sent(first.delivery_id, NOW + timedelta(seconds=16))
    assert store.state_of(store.list_alerts()[0].alert_id) == "notified"
    later = NOW + timedelta(seconds=60)
    store.record([outage("e2", "C2", ANNA, second=40), outage("e3", "C3", ANNA, second=50)],
                 incident_rules=RULES, now=later, managers=MANAGERS)
    assert due(store, later + timedelta(seconds=200)) == []
    [update] = store.claim_due(NOW + timedelta(seconds=300), 10)
    message = render_notice_delivery(store, update)
    assert message.subject.startswith("[INCIDENT UPDATE HIGH]")
    assert "3 of your clients affected" in message.subject
    assert message.text.count("NEW Client") == 2 and "NEW Client C1" not in message.text


def test_the_notice_names_the_managers_clients_in_their_zone_with_ack_links(store: AlertStore) -> None:
    """A notice lists only its manager's clients, with local times, codes and the incident's scale."""
    from monitor.alerts.delivery.links import AckLinks

    store.record([outage("e1", "C1", ANNA), outage("e2", "C2", LI, second=30)], incidents=[opened()],
                 incident_rules=RULES, now=NOW, managers=MANAGERS)
    rows = store.claim_due(NOW + timedelta(seconds=15), 10)
    links = AckLinks("a-secret-of-at-least-16", "https://cardmon.bank.test")
    texts = {}
    for row in rows:
        message = render_notice_delivery(store, row, links=links)
        texts[message.email] = message
    anna, li = texts["anna@bank.test"], texts["li@bank.test"]
    assert "Client C1" in anna.text and "Client C2" not in anna.text
    assert "Client C2" in li.text and "Client C1" not in li.text
    assert "Mon 02 Nov 2026, 10:00 CET" in anna.text and "17:00 CST" in li.text
    assert "code 91 (Issuer or switch inoperative) at ATM-9" in anna.text
    assert "5 failed transactions, 5 cards, 1 terminal(s)" in anna.text
    assert "https://cardmon.bank.test/" in anna.text
    assert anna.idempotency_key == f"{anna.alert_id}:email" and anna.alert_id.startswith("ic-")
    assert anna.payload["clients"][0]["customer_id"] == "C1"


def test_an_ended_incident_sends_the_all_clear_only_to_managers_who_opted_in_and_were_told(
        store: AlertStore) -> None:
    """The resolved follow-up goes to a notified manager who opted in, not to one who did not."""
    store.record([outage("e1", "C1", ANNA), outage("e2", "C2", LI)], incidents=[opened()],
                 incident_rules=RULES, now=NOW, managers=MANAGERS)
    for row in store.claim_due(NOW + timedelta(seconds=15), 10):
        store.mark_sent(row.delivery_id, NOW + timedelta(seconds=16))
    end = NOW + timedelta(minutes=10)
    store.record([], incidents=[opened(kind="ended", ended_at=T0 + timedelta(seconds=90),
                                       last_failure_at=T0 + timedelta(seconds=90))],
                 incident_rules=RULES, now=end, managers=MANAGERS)
    incident = store.get_incident("in-test")
    assert incident is not None and incident.ended_at == T0 + timedelta(seconds=90)
    rows = store.claim_due(end, 10)
    assert len(rows) == 1
    message = render_notice_delivery(store, rows[0])
    assert message.email == "anna@bank.test" and message.subject.startswith("[RESOLVED]")


def test_a_second_instance_opening_the_same_outage_joins_the_first_incident(store: AlertStore) -> None:
    """Two detectors, two IDs, one scope key: the store keeps one open incident and links both's alerts to it."""
    store.record([outage("e1", "C1", ANNA, incident_id="in-first")], incidents=[opened("in-first")], incident_rules=RULES,
                 now=NOW, managers=MANAGERS)
    store.record([outage("e2", "C2", LI, incident_id="in-second")],
                 incidents=[opened("in-second", failures=7)], incident_rules=RULES, now=NOW,
                 managers=MANAGERS)
    [incident] = store.list_incidents()
    assert (incident.incident_id, incident.alert_count, incident.manager_count) == ("in-first", 2, 2)


def test_an_incident_that_opens_later_takes_in_the_outage_alerts_its_change_names(store: AlertStore) -> None:
    """Alerts recorded before the incident opened join it when its change names their events, and lose their held message; others do not."""
    store.record([outage("e1", "C1", ANNA, incident_id=None),
                  outage("e2", "C2", LI, incident_id=None, second=10)],
                 incident_rules=RULES, now=NOW, managers=MANAGERS)
    elsewhere = replace(outage("e3", "C3", ANNA, incident_id=None, second=20),
                        event=replace(outage("e3", "C3", ANNA).event, terminal_id="ATM-1"))
    declined = replace(outage("e4", "C4", LI, incident_id=None, second=30),
                       event=replace(outage("e4", "C4", LI).event, outcome="customer", response_code="51"))
    store.record([elsewhere, declined], incident_rules=RULES, now=NOW, managers=MANAGERS)
    store.record([], incidents=[opened(event_ids=("e1", "e2", "unknown"))], incident_rules=RULES,
                 now=NOW + timedelta(seconds=8), managers=MANAGERS)
    incident = store.get_incident("in-test")
    assert incident is not None and (incident.alert_count, incident.manager_count) == (2, 2)
    by_customer = {a.customer_id: a.status for a in store.list_alerts()}
    assert by_customer == {"C1": "merged", "C2": "merged", "C3": "pending", "C4": "pending"}


def test_an_alert_stays_with_the_first_incident_that_takes_one_of_its_events(store: AlertStore) -> None:
    """Two incidents naming events of one alert in one batch: the alert joins the first in the changes' order."""
    store.record([outage("e1", "C1", ANNA, incident_id=None), outage("e2", "C1", ANNA, incident_id=None, second=5)],
                 incident_rules=RULES, now=NOW, managers=MANAGERS)
    store.record([], incidents=[opened("in-b", scope_key="ATM-8", event_ids=("e2",)),
                                opened("in-a", event_ids=("e1",))],
                 incident_rules=RULES, now=NOW, managers=MANAGERS)
    [alert] = store.list_alerts()
    assert store.incident_of(alert.alert_id) == "in-b"


def test_the_suggested_action_does_not_depend_on_the_order_events_arrive(store: AlertStore) -> None:
    """Equally severe failures with different actions: an alert keeps the earliest event's action, in either arrival order."""
    def failure(event_id: str, customer: str, second: int, action: str) -> VipFailure:
        return replace(outage(event_id, customer, ANNA, incident_id=None, second=second), suggested_action=action)

    for failure_ in (failure("a1", "C1", 1, "call the issuer"), failure("a2", "C1", 2, "check the ATM"),
                     failure("b2", "C2", 2, "check the ATM"), failure("b1", "C2", 1, "call the issuer")):
        store.record([failure_], now=NOW, managers=MANAGERS)
    assert {a.customer_id: a.suggested_action for a in store.list_alerts()} == {
        "C1": "call the issuer", "C2": "call the issuer"}


def test_cardmon_incidents_list_shows_the_store_s_incidents(tmp_path: Path) -> None:
    """`cardmon incidents list` prints each incident with its key, times, scale and VIP alerts; --open hides ended ones."""
    from typer.testing import CliRunner

    from monitor.cli import app

    path = tmp_path / "alerts.db"
    with AlertStore(path) as db:
        db.record([outage("e1", "C1", ANNA), outage("e2", "C2", LI)], incidents=[opened()],
                  incident_rules=RULES, now=NOW, managers=MANAGERS)
        db.record([], incidents=[opened("in-other", scope_key="ATM-7"),
                                 opened("in-other", kind="ended", scope_key="ATM-7",
                                        ended_at=T0 + timedelta(seconds=60))],
                  incident_rules=RULES, now=NOW, managers=MANAGERS)
    runner = CliRunner()
    listing = runner.invoke(app, ["incidents", "list", "--store", str(path)])
    assert listing.exit_code == 0, listing.output
    header, *rows = listing.stdout.splitlines()
    assert header.split()[:3] == ["INCIDENT", "SCOPE", "KEY"]
    assert sorted(row.split()[:3] for row in rows) == [["in-other", "terminal", "ATM-7"],
                                                       ["in-test", "terminal", "ATM-9"]]
    test_row = next(row for row in rows if row.startswith("in-test"))
    assert "2026-11-02 09:00:00  open" in test_row and test_row.split()[-2:] == ["2", "2"]
    only_open = runner.invoke(app, ["incidents", "list", "--open", "--store", str(path)]).stdout
    assert [row.split()[0] for row in only_open.splitlines()[1:]] == ["in-test"]


def test_unacknowledged_alerts_of_an_incident_escalate_to_the_backup_in_one_message(store: AlertStore) -> None:
    """Three of Anna's clients in one incident, one acknowledged: her backup gets one message naming the two others."""
    from monitor.alerts.jobs import escalate_due
    from monitor.alerts.lifecycle import EscalationPolicy

    backup = Manager(manager_id="RM-9", name="Bo Berg", email="bo@bank.test", timezone="Europe/Stockholm")
    anna = replace(ANNA, backup_manager_id="RM-9")
    managers = {"RM-1": anna, "RM-9": backup, "RM-2": LI}
    store.record([outage("e1", "C1", anna), outage("e2", "C2", anna, second=5),
                  outage("e3", "C3", anna, second=9)], incidents=[opened()], incident_rules=RULES,
                 now=NOW, managers=managers)
    [notice] = store.claim_due(NOW + timedelta(seconds=15), 10)
    store.mark_sent(notice.delivery_id, NOW + timedelta(seconds=16))
    first = store.incident_alerts("in-test")[0][0].alert_id
    store.acknowledge(first, by="RM-1", via="link", at=NOW + timedelta(minutes=5))
    rules = EscalationPolicy.from_mapping({"severities": ["high"],
                                           "steps": [{"after_seconds": 900, "to": "backup_manager"}]})
    taken = escalate_due(store, NOW + timedelta(minutes=16), rules, managers)
    assert len(taken) == 2 and sum(e.deliveries_enqueued for e in taken) == 1
    [row] = store.claim_due(NOW + timedelta(minutes=16), 10)
    message = render_notice_delivery(store, row)
    assert message.email == "bo@bank.test"
    assert message.subject.startswith("[INCIDENT ESCALATED HIGH] Terminal ATM-9 outage — 2 client(s) of Anna Berg")
    assert "Client C2" in message.text and "Client C3" in message.text and "Client C1 " not in message.text
    assert store.mark_sent(row.delivery_id, NOW + timedelta(minutes=16))
    assert {store.state_of(a.alert_id) for a, *_ in store.incident_alerts("in-test")} == {"acknowledged", "notified"}


def test_a_child_incident_keeps_its_parent_and_top_level_lists_leave_it_out(store: AlertStore) -> None:
    """A terminal incident adopted by a network incident records its parent; top_level=True lists the network one only."""
    store.record([], incidents=[opened()], incident_rules=RULES, now=NOW, managers=MANAGERS)
    network = opened("in-net", scope="network", scope_key="fleet", failures=60, terminals=12)
    store.record([], incidents=[network, opened(kind="updated", parent_id="in-net")],
                 incident_rules=RULES, now=NOW, managers=MANAGERS)
    child = store.get_incident("in-test")
    assert child is not None and child.parent_id == "in-net"
    assert [i.incident_id for i in store.list_incidents(top_level=True)] == ["in-net"]
    assert {i.incident_id for i in store.list_incidents()} == {"in-net", "in-test"}
