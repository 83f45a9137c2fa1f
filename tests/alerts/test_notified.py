"""`notified` means a person's channel accepted the alert; late and unroutable alerts say so."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.alerts.jobs import escalate_due, summaries_due
from monitor.alerts.lifecycle import EscalationPolicy
from monitor.alerts.messages.digest import render_digest_delivery
from monitor.alerts.ratelimit import RateLimit
from monitor.alerts.routing import unreachable_managers
from monitor.alerts.states import AlertNotFoundError
from monitor.alerts.store import AlertStore
from monitor.domain import Manager, VipFailure
from monitor.ids import is_summary_id

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MakeFailure = Callable[..., VipFailure]
CLAIRE = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example",
                 timezone="Europe/Paris")
EMAIL_ONLY = Manager(manager_id="RM-030", name="Ana Silva", email="ana.silva@bank.example")
NOBODY = Manager(manager_id="RM-031", name="Lee Quiet")
MUTED = Manager(manager_id="RM-032", name="Max Low", email="max@bank.example",
                channels={"low": ()})


@pytest.fixture
def store(store_location: Path | str) -> Iterator[AlertStore]:
    """A fresh alert store (a SQLite file or a PostgreSQL schema)."""
    with AlertStore(store_location) as opened:
        yield opened


def _actions(store: AlertStore, alert_id: str) -> list[tuple[str, str, str]]:
    return [(h.action, h.to_state, h.via) for h in store.history(alert_id)]


@pytest.mark.parametrize("sink", ["jsonl", "console", "alertmanager"])
def test_a_sink_accepting_an_alert_notifies_nobody(
        store: AlertStore, make_failure: MakeFailure, sink: str) -> None:
    """A sink's acceptance leaves the alert open with no `notified` history; the manager's e-mail makes it notified."""
    alert_id = store.record([make_failure("ev-1", NOW, manager=CLAIRE)], sinks=[sink],
                            now=NOW).new_alert_ids[0]
    rows = {d.channel: d for d in store.claim_due(NOW, 10)}
    assert store.mark_sent(rows[sink].delivery_id, NOW)
    assert store.state_of(alert_id) == "open"
    assert store.get_alert(alert_id).status == "pending"  # type: ignore[union-attr]
    assert [a for a, _, _ in _actions(store, alert_id)] == ["opened"]
    assert store.mark_sent(rows["email"].delivery_id, NOW + timedelta(seconds=1))
    assert store.state_of(alert_id) == "notified"
    assert _actions(store, alert_id)[-1] == ("notified", "notified", "email")


def test_people_failing_make_the_alert_failed_whatever_the_sinks_did(
        store: AlertStore, make_failure: MakeFailure) -> None:
    """E-mail failed for good and the jsonl sink took it: the alert is failed, not notified."""
    alert_id = store.record([make_failure("ev-1", NOW, manager=CLAIRE)], sinks=["jsonl"],
                            now=NOW).new_alert_ids[0]
    rows = {d.channel: d for d in store.claim_due(NOW, 10)}
    store.mark_sent(rows["jsonl"].delivery_id, NOW)
    store.mark_failed(rows["email"].delivery_id, "SMTPConnectError: relay down")
    assert store.state_of(alert_id) == "failed"
    assert store.get_alert(alert_id).status == "failed"  # type: ignore[union-attr]
    assert store.find_alerts(state="failed").alerts[0].alert_id == alert_id
    assert store.failed_deliveries() == 1


def test_an_alert_no_configured_channel_reaches_is_flagged_and_listed(
        store: AlertStore, make_failure: MakeFailure) -> None:
    """An e-mail-only manager without an SMTP relay: the alert is unroutable (flag, note, list filter), the sink still records it, a muted severity is not unroutable."""
    result = store.record([make_failure("ev-1", NOW, manager=EMAIL_ONLY),
                           make_failure("ev-2", NOW, manager=NOBODY, customer_id="C-2"),
                           make_failure("ev-3", NOW, manager=MUTED, customer_id="C-3", severity="low"),
                           make_failure("ev-4", NOW, manager=CLAIRE, customer_id="C-4")],
                          sinks=["jsonl"], channels=["webhook"], now=NOW)
    first, second, muted, claire = result.new_alert_ids
    assert result.unroutable_alert_ids == (first, second, claire)
    alert = store.get_alert(first)
    assert alert is not None and alert.unroutable and alert.status == "unrouted"
    assert [d.channel for d in alert.deliveries] == ["jsonl"]
    note = store.history(first)[0].note or ""
    assert "unroutable: no configured channel reaches RM-030 at high" in note
    assert "their channels: email; configured: webhook" in note
    assert "no e-mail address, webhook or Apprise URL" in (store.history(second)[0].note or "")
    assert not store.get_alert(muted).unroutable  # type: ignore[union-attr]
    listed = store.find_alerts(unroutable=True).alerts
    assert {a.alert_id for a in listed} == {first, second, claire}
    assert "ana.silva" not in note


def test_unreachable_managers_are_named_by_severity(make_failure: MakeFailure) -> None:
    """Without e-mail, the e-mail-only manager and the one with no contact miss every severity; a muted severity is not missed."""
    hook = Manager(manager_id="RM-040", name="Bo Hook", webhook_url="https://hooks.bank.example/bo")
    missed = unreachable_managers([CLAIRE, EMAIL_ONLY, NOBODY, MUTED, hook], ["webhook", "apprise"])
    assert missed == {"RM-017": ("high", "medium", "low"), "RM-030": ("high", "medium", "low"),
                      "RM-031": ("high", "medium", "low"), "RM-032": ("high", "medium")}
    assert unreachable_managers([CLAIRE, hook], ["email", "webhook"]) == {}


def test_a_summary_that_fails_for_good_fails_its_alerts_and_a_resend_reopens_them(
        store: AlertStore, make_failure: MakeFailure) -> None:
    """The rate-cap summary's e-mail fails: the capped alerts it carried are failed; re-sending the summary makes them open, then notified once it is sent."""
    limit = RateLimit(max_messages=1, per_seconds=3600, summary_after_seconds=0)
    managers = {CLAIRE.manager_id: CLAIRE}
    store.record([make_failure(f"e{n}", NOW, customer_id=f"C{n}", manager=CLAIRE) for n in range(3)],
                 now=NOW, rate_limit=limit, managers=managers)
    [summary] = summaries_due(store, NOW + timedelta(minutes=1), limit, managers)
    [row] = [d for d in store.claim_due(NOW + timedelta(minutes=1), 50) if is_summary_id(d.alert_id)]
    store.mark_failed(row.delivery_id, "SMTPConnectError: relay down")
    capped = [a.alert_id for a, _ in store.summary_alerts(summary.summary_id)]
    assert len(capped) == 2 and {store.state_of(a) for a in capped} == {"failed"}
    resent = store.resend(capped[0], by="Ops Desk", via="cli", at=NOW + timedelta(minutes=2))
    assert (resent.deliveries, resent.message_ids) == (1, (summary.summary_id,))
    assert set(resent.alert_ids) == set(capped)
    assert {store.state_of(a) for a in capped} == {"open"}
    [again] = [d for d in store.claim_due(NOW + timedelta(minutes=2), 50) if is_summary_id(d.alert_id)]
    assert (again.delivery_id, again.attempts, again.first_attempt_at) == (
        row.delivery_id, 0, NOW + timedelta(minutes=2))
    store.mark_sent(again.delivery_id, NOW + timedelta(minutes=2))
    assert {store.state_of(a) for a in capped} == {"notified"}
    assert [h.action for h in store.history(capped[0])][-3:] == ["failed", "resent", "notified"]
    with pytest.raises(AlertNotFoundError):
        store.resend("al-nothing", by="Ops Desk", via="cli")
    assert store.resend(None, by="Ops Desk", via="cli").deliveries == 0


# -- stale events: late alerts -----------------------------------------------------------


def test_a_week_old_failure_is_stored_late_and_pages_nobody(
        store: AlertStore, make_failure: MakeFailure) -> None:
    """A failure a week old when processed: a late alert, in the record-only sinks but not Alertmanager, with no person's delivery, no escalation, and a note."""
    old = NOW - timedelta(days=7)
    result = store.record([make_failure("ev-old", old, manager=CLAIRE)],
                          sinks=["jsonl", "alertmanager"], now=NOW, stale_after_seconds=1800)
    (alert_id,) = result.late_alert_ids
    alert = store.get_alert(alert_id)
    assert alert is not None and alert.late and alert.status == "late"
    assert [d.channel for d in alert.deliveries] == ["jsonl"]
    assert "late: the failure happened 7 d 0 min before cardmon processed it" in (
        store.history(alert_id)[0].note or "")
    rules = EscalationPolicy.from_mapping({"severities": ["high"],
                                           "steps": [{"after_seconds": 60, "to": "backup_manager"}]})
    assert escalate_due(store, NOW + timedelta(hours=1), rules, {}) == []
    assert [a.alert_id for a in store.find_alerts(late=True).alerts] == [alert_id]
    assert store.find_alerts(late=False).alerts == ()


def test_a_recent_failure_pages_and_a_fresh_one_joining_a_late_alert_makes_it_news(
        store: AlertStore, make_failure: MakeFailure) -> None:
    """Twenty minutes old is not stale at 30 minutes; a late alert joined by a fresh failure of its window is enqueued to the manager."""
    recent = store.record([make_failure("ev-1", NOW - timedelta(minutes=20), manager=CLAIRE)],
                          now=NOW, stale_after_seconds=1800)
    assert recent.late_alert_ids == () and recent.deliveries_enqueued == 1
    # Five minutes' staleness, ten-minute windows: a window can hold both kinds.
    window = NOW + timedelta(hours=1)
    late = store.record([make_failure("ev-2", window, manager=CLAIRE, customer_id="C-2")],
                        now=window + timedelta(minutes=6), stale_after_seconds=300)
    (alert_id,) = late.late_alert_ids
    fresh = store.record([make_failure("ev-3", window + timedelta(minutes=7), manager=CLAIRE,
                                       customer_id="C-2")],
                         now=window + timedelta(minutes=7, seconds=30), stale_after_seconds=300)
    assert fresh.deliveries_enqueued == 1
    alert = store.get_alert(alert_id)
    assert alert is not None and not alert.late and [d.channel for d in alert.deliveries] == ["email"]
    assert "no longer late" in (store.history(alert_id)[0].note or "")


def test_the_digest_lists_late_alerts_apart(
        store: AlertStore, make_failure: MakeFailure) -> None:
    """The manager's digest counts the late alert and lists it under its own heading, not as waiting for an acknowledgement."""
    manager = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example",
                      timezone="Europe/Paris", digest_at=NOW.time())
    store.record([make_failure("ev-old", NOW - timedelta(days=2), manager=manager)], now=NOW,
                 stale_after_seconds=1800)
    record = store.claim_digest(manager, NOW.date(), at=NOW + timedelta(hours=1))
    assert record is not None and record.alert_count == 1
    [row] = [d for d in store.claim_due(NOW + timedelta(hours=1), 10) if d.alert_id == record.digest_id]
    message = render_digest_delivery(store, row)
    assert message.subject.endswith("0 unacknowledged, 1 late")
    assert "Late (1): failures cardmon processed long after they happened" in message.text
    assert "happened Sat 28 Feb 10:00 CET  [HIGH] Ada Lovelace (private)" in message.text
    assert [item["alert_id"] for item in message.payload["late"]] == [
        a.alert_id for a in store.list_alerts()]
    assert message.payload["unacknowledged"] == []
