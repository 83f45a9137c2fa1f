"""The per-manager rate cap: alerts past the cap wait and go out as one summary."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.alerts.jobs import summaries_due
from monitor.alerts.messages.summary import render_summary_delivery
from monitor.alerts.ratelimit import RateLimit, RateLimitError
from monitor.alerts.store import AlertStore
from monitor.domain import Manager, VipFailure
from monitor.ids import is_summary_id

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LIMIT = RateLimit(max_messages=3, per_seconds=3600, summary_after_seconds=600)


@pytest.fixture
def store(store_location: Path | str) -> Iterator[AlertStore]:
    with AlertStore(store_location) as opened:
        yield opened


def record_clients(store: AlertStore, make_failure: Callable[..., VipFailure], manager: Manager,
                   count: int, *, first: int = 0, at: datetime = NOW, sinks: tuple[str, ...] = ()) -> None:
    """One failure of each of ``count`` different clients, recorded at ``at``."""
    failures = [make_failure(f"e{n}", NOW - timedelta(minutes=5), customer_id=f"C{n}",
                             customer_name=f"Client {n}", manager=manager)
                for n in range(first, first + count)]
    store.record(failures, now=at, rate_limit=LIMIT, sinks=sinks, managers={manager.manager_id: manager})


def test_alerts_past_the_cap_get_no_message_of_their_own(
        store: AlertStore, make_failure: Callable[..., VipFailure], paris_manager: Manager) -> None:
    """With a cap of three per hour, the fourth and fifth alerts are held, not sent, and the history says why."""
    record_clients(store, make_failure, paris_manager, 5)
    alerts = store.list_alerts()
    sent_alone = [a for a in alerts if a.deliveries]
    assert len(sent_alone) == 3
    held = [a for a in alerts if not a.deliveries]
    assert len(held) == 2
    assert "rate cap" in (store.history(held[0].alert_id)[0].note or "")


def test_sinks_still_get_every_alert_over_the_cap(
        store: AlertStore, make_failure: Callable[..., VipFailure], paris_manager: Manager) -> None:
    """The cap protects people; the jsonl sink (a file for operations) still gets all five alerts."""
    record_clients(store, make_failure, paris_manager, 5, sinks=("jsonl",))
    channels = [d.channel for a in store.list_alerts() for d in a.deliveries]
    assert channels.count("jsonl") == 5 and channels.count("email") == 3


def test_the_cap_is_per_manager_and_per_window(
        store: AlertStore, make_failure: Callable[..., VipFailure], paris_manager: Manager) -> None:
    """Another manager is not capped by the first one's load, and an hour later the cap is free again."""
    other = Manager(manager_id="RM-099", name="Omar Haddad", email="omar@bank.test", timezone="Asia/Dubai")
    record_clients(store, make_failure, paris_manager, 3)
    record_clients(store, make_failure, other, 2, first=100)
    record_clients(store, make_failure, paris_manager, 1, first=200, at=NOW + timedelta(minutes=61))
    assert all(a.deliveries for a in store.list_alerts())


def test_the_held_alerts_go_out_as_one_summary_once_and_become_notified(
        store: AlertStore, make_failure: Callable[..., VipFailure], paris_manager: Manager) -> None:
    """Ten minutes after the first held alert, one summary names the seven held clients; a second pass claims nothing."""
    managers = {paris_manager.manager_id: paris_manager}
    record_clients(store, make_failure, paris_manager, 10)
    assert summaries_due(store, NOW + timedelta(minutes=9), LIMIT, managers) == []
    [summary] = summaries_due(store, NOW + timedelta(minutes=10), LIMIT, managers)
    assert summary.alert_count == 7
    assert summaries_due(store, NOW + timedelta(minutes=11), LIMIT, managers) == []
    rows = [d for d in store.claim_due(NOW + timedelta(minutes=10), 50) if is_summary_id(d.alert_id)]
    assert [d.channel for d in rows] == ["email"]
    message = render_summary_delivery(store, rows[0])
    assert message.subject.startswith("[SUMMARY] 7 more alert(s) for your clients (7 high)")
    assert sorted(line.split("]")[1].split(" — ")[0].strip() for line in message.text.splitlines()
                  if line.startswith("  [HIGH]")) == [f"Client {n}" for n in range(3, 10)]
    assert message.idempotency_key == f"{summary.summary_id}:email"
    assert store.mark_sent(rows[0].delivery_id, NOW + timedelta(minutes=10))
    held = [a for a in store.list_alerts() if not a.deliveries]
    assert {store.state_of(a.alert_id) for a in held} == {"notified"}
    assert "summary" in (store.history(held[0].alert_id)[-1].note or "")


def test_a_summary_counts_towards_the_cap(
        store: AlertStore, make_failure: Callable[..., VipFailure], paris_manager: Manager) -> None:
    """Messages already sent include summaries: after three messages, the next alert is held again."""
    managers = {paris_manager.manager_id: paris_manager}
    record_clients(store, make_failure, paris_manager, 3)
    record_clients(store, make_failure, paris_manager, 1, first=10)
    summaries_due(store, NOW + timedelta(minutes=10), LIMIT, managers)
    record_clients(store, make_failure, paris_manager, 1, first=20, at=NOW + timedelta(minutes=30))
    assert len([a for a in store.list_alerts() if not a.deliveries]) == 2


def test_the_repository_rules_cap_ten_messages_an_hour(tmp_path: Path) -> None:
    """rules/alerting.yaml caps ten messages per manager per hour; a bad section is refused by field."""
    from monitor.paths import rules_path

    assert RateLimit.load(rules_path("alerting.yaml")) == RateLimit(
        max_messages=10, per_seconds=3600, summary_after_seconds=900)
    bad = tmp_path / "alerting.yaml"
    bad.write_text("rate_limit:\n  max_messages: 0\n", encoding="utf-8")
    with pytest.raises(RateLimitError, match="rate_limit.max_messages"):
        RateLimit.load(bad)
    bad.write_text("grouping_window_seconds: 600\n", encoding="utf-8")
    assert RateLimit.load(bad) is None
