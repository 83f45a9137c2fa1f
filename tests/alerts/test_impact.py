"""Repair priority: terminals ranked by VIP impact, their own failure classes only, upstream outages left out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.alerts.store import AlertStore
from monitor.domain import Manager, VipFailure
from monitor.incidents import IncidentChange, IncidentRules

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
OWN = ("technical", "terminal", "card")
LI = Manager(manager_id="RM-2", name="Li Wei", email="li@bank.test")
RULES = IncidentRules.model_validate({"group_wait_seconds": 15, "group_interval_seconds": 300,
                                      "scopes": {"issuer": {"min_failures": 5}}})


def _failure(make_failure: Callable[..., VipFailure], n: int, terminal: str, customer: str, *,
             minutes: int = 0, outcome: str = "technical", **fields: object) -> VipFailure:
    return make_failure(f"ev-{n}", T0 + timedelta(minutes=minutes), customer_id=customer,
                        customer_name=f"Client {customer}", terminal_id=terminal, outcome=outcome,
                        response_code=None if outcome == "technical" else "05", **fields)


def test_terminals_rank_by_clients_then_failures_then_managers(
    store_location: Path | str, make_failure: Callable[..., VipFailure]
) -> None:
    """Three clients once each outrank one client five times; ties break on failures, then managers, then ID."""
    with AlertStore(store_location) as store:
        store.record([
            *[_failure(make_failure, n, "ATM-ONE", "C-1", minutes=n) for n in range(5)],
            *[_failure(make_failure, 10 + n, "ATM-MANY", f"C-{10 + n}", minutes=n) for n in range(3)],
            _failure(make_failure, 20, "POS-TWO", "C-20", outcome="terminal", channel="POS"),
            _failure(make_failure, 21, "POS-TWO", "C-21", outcome="card", channel="POS", manager=LI),
        ], now=T0)
        ranked = store.terminal_impact(since=T0, until=T0 + timedelta(hours=24), classes=OWN)
        top = store.terminal_impact(since=T0, until=T0 + timedelta(hours=24), classes=OWN, limit=1)
    assert [(t.terminal_id, t.clients, t.failures, t.managers) for t in ranked] == [
        ("ATM-MANY", 3, 3, 1), ("POS-TWO", 2, 2, 2), ("ATM-ONE", 1, 5, 1)]
    assert [t.terminal_id for t in top] == ["ATM-MANY"]
    two = ranked[1]
    assert (two.channel, two.outcomes) == ("POS", (("card", 1), ("terminal", 1)))
    assert ranked[2].last_failure_at == T0 + timedelta(minutes=4)


def test_only_the_terminals_own_classes_in_the_period_count(
    store_location: Path | str, make_failure: Callable[..., VipFailure]
) -> None:
    """A client's own decline (customer class) and failures outside [since, until) do not count."""
    with AlertStore(store_location) as store:
        store.record([
            _failure(make_failure, 1, "ATM-A", "C-1", outcome="customer"),
            _failure(make_failure, 2, "ATM-A", "C-2", minutes=-1),
            _failure(make_failure, 3, "ATM-A", "C-3", minutes=60),
            _failure(make_failure, 4, "ATM-A", "C-4", minutes=30),
        ], now=T0)
        ranked = store.terminal_impact(since=T0, until=T0 + timedelta(minutes=60), classes=OWN)
        with pytest.raises(ValueError, match="class"):
            store.terminal_impact(since=T0, until=T0, classes=())
        with pytest.raises(ValueError, match="naive"):
            store.terminal_impact(since=T0.replace(tzinfo=None), until=T0, classes=OWN)
    assert [(t.terminal_id, t.clients, t.failures) for t in ranked] == [("ATM-A", 1, 1)]


def test_failures_of_an_issuer_outage_are_not_the_terminals_to_repair(
    store_location: Path | str, make_failure: Callable[..., VipFailure]
) -> None:
    """Alerts linked to an issuer incident are left out; the terminal's failures outside it still count."""
    outage = IncidentChange(kind="opened", incident_id="in-iss", scope="issuer", scope_key="412345",
                            started_at=T0, last_failure_at=T0, failures=9, cards=9, terminals=4)
    with AlertStore(store_location) as store:
        linked = [replace(_failure(make_failure, n, "ATM-B", f"C-{n}"), incident_id="in-iss")
                  for n in range(3)]
        store.record(linked, incidents=[outage], incident_rules=RULES, now=T0, managers={})
        store.record([_failure(make_failure, 9, "ATM-B", "C-9", minutes=40)], now=T0)
        ranked = store.terminal_impact(since=T0, until=T0 + timedelta(hours=1), classes=OWN)
    assert [(t.terminal_id, t.clients, t.failures) for t in ranked] == [("ATM-B", 1, 1)]
