"""A store with known contents for the report's tests, built through the store's own API.

Three managers (Claire leads a team with Jonas; Li is in no team), six alerts over three
days of December 2026 (UTC) and two failures just outside the period. Every number the
report should show for it is written out by hand in :data:`EXPECTED` (worked out from
the list below, not by cardmon's code).

====  ======  ========  ==========================  =====  ========================  ============
alert  client  manager   failures (UTC, class, term)  ack    resolution (after record)  recovery
====  ======  ========  ==========================  =====  ========================  ============
A1    C-1     Claire    12-01 09:02, 09:03 technical  3 min  10 min called_client       recovered
                        ATM-1
A2    C-2     Claire    12-01 14:00 customer POS-1    30 min 60 min client_unreachable  abandoned
A3    C-3     Jonas     12-02 10:00 terminal ATM-1    1 min  2 h card_replaced          watching
A4    C-4     Jonas     12-02 11:00-11:02 card ×3     7 min  —                          (none)
                        ATM-2
A5    C-5     Li        12-03 08:00 technical ATM-2   —      —                          recovered
A6    C-6     Li        12-03 20:00 fraud POS-2       2 min  4 min, note only           abandoned
====  ======  ========  ==========================  =====  ========================  ============

Each alert is recorded 5 minutes after its first failure (``created_at``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.alerts.store import AlertStore, window_start_for
from monitor.domain import Manager, VipFailure
from monitor.testing.samples import sample_failure, write_recovery_row

SINCE = datetime(2026, 12, 1, tzinfo=UTC)
UNTIL = datetime(2026, 12, 4, tzinfo=UTC)
NOW = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
CLAIRE = Manager(
    manager_id="RM-017", name="Claire Martin", email="claire@bank.example", timezone="Europe/Paris"
)
JONAS = Manager(
    manager_id="RM-042", name="Jonas Weber", email="jonas@bank.example", timezone="Europe/Paris"
)
LI = Manager(manager_id="RM-002", name="Li Wei", email="li@bank.example", timezone="Asia/Shanghai")
TEAMS = {CLAIRE.manager_id: (JONAS.manager_id,)}
#: Client names that must never appear in a report.
CLIENT_NAMES = tuple(f"Client Secret{n}" for n in range(1, 8))
OWN_CLASSES = ("technical", "terminal", "card")


def _failure(
    event_id: str, at: datetime, customer: int, manager: Manager, outcome: str, terminal: str
) -> VipFailure:
    return sample_failure(event_id, at, customer_id=f"C-{customer}",
                          customer_name=CLIENT_NAMES[customer - 1], manager=manager,
                          outcome=outcome, terminal_id=terminal)


def _day(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


def _alert(store: AlertStore, failures: list[VipFailure]) -> str:
    created = failures[0].event.occurred_at + timedelta(minutes=5)
    [alert_id] = store.record(failures, now=created, channels=("email",)).new_alert_ids
    return alert_id


def _recovery(store: AlertStore, alert_id: str, failure: VipFailure, status: str) -> None:
    """Insert the recovery watch's row (its writer is another part of cardmon)."""
    with store._transaction() as conn:  # the row as the watch writes it
        write_recovery_row(conn, alert_id, failure, status)


def _act(
    store: AlertStore,
    alert_id: str,
    manager: Manager,
    *,
    ack: int | None = None,
    resolve: int | None = None,
    outcome: str | None = None,
) -> None:
    created = store.get_alert(alert_id).created_at  # type: ignore[union-attr]
    if ack is not None:
        store.acknowledge(
            alert_id, by=manager.manager_id, via="workspace", at=created + timedelta(minutes=ack)
        )
    if resolve is not None:
        store.resolve(
            alert_id,
            by=manager.manager_id,
            via="workspace",
            outcome=outcome,
            note=None if outcome else "Spoke to the branch.",
            at=created + timedelta(minutes=resolve),
        )


def build(location: Path | str) -> None:
    """Record the known contents (the module's table) in a new store at ``location``."""
    assert window_start_for(_day(1, 9, 2)) == window_start_for(_day(1, 9, 3))
    with AlertStore(location) as store:
        store.record(
            [_failure("ev-0", _day(1, 0) - timedelta(minutes=1), 7, CLAIRE, "technical", "ATM-9")],
            now=_day(1, 0),
        )
        store.record([_failure("ev-9", UNTIL, 7, CLAIRE, "technical", "ATM-9")], now=UNTIL)
        a1 = [
            _failure("ev-1a", _day(1, 9, 2), 1, CLAIRE, "technical", "ATM-1"),
            _failure("ev-1b", _day(1, 9, 3), 1, CLAIRE, "technical", "ATM-1"),
        ]
        a2 = [_failure("ev-2", _day(1, 14), 2, CLAIRE, "customer", "POS-1")]
        a3 = [_failure("ev-3", _day(2, 10), 3, JONAS, "terminal", "ATM-1")]
        a4 = [_failure(f"ev-4{n}", _day(2, 11, n), 4, JONAS, "card", "ATM-2") for n in range(3)]
        a5 = [_failure("ev-5", _day(3, 8), 5, LI, "technical", "ATM-2")]
        a6 = [_failure("ev-6", _day(3, 20), 6, LI, "fraud", "POS-2")]
        ids = [_alert(store, failures) for failures in (a1, a2, a3, a4, a5, a6)]
        _act(store, ids[0], CLAIRE, ack=3, resolve=10, outcome="called_client")
        _act(store, ids[1], CLAIRE, ack=30, resolve=60, outcome="client_unreachable")
        _act(store, ids[2], JONAS, ack=1, resolve=120, outcome="card_replaced")
        _act(store, ids[3], JONAS, ack=7)
        _act(store, ids[5], LI, ack=2, resolve=4)
        for alert_id, failures, status in (
            (ids[0], a1, "recovered"),
            (ids[1], a2, "abandoned"),
            (ids[2], a3, "watching"),
            (ids[4], a5, "recovered"),
            (ids[5], a6, "abandoned"),
        ):
            _recovery(store, alert_id, failures[0], status)


def _outcomes(**counts: int) -> dict[str, int]:
    keys = (
        "called_client",
        "reversal_or_refund_arranged",
        "card_replaced",
        "terminal_reported_to_operations",
        "client_unreachable",
        "no_action_needed",
        "note_only",
        "not_resolved",
    )
    return {key: counts.get(key, 0) for key in keys}


def _times(count: int, median: float | None, p90: float | None) -> dict[str, Any]:
    return {"count": count, "median_seconds": median, "p90_seconds": p90}


#: What the whole-bank report of [SINCE, UNTIL) in UTC must say (worked out by hand).
EXPECTED: dict[str, Any] = {
    "failures": 9,
    "alerts": 6,
    "failures_by_day": {
        "2026-12-01": {"customer": 1, "technical": 2},
        "2026-12-02": {"card": 3, "terminal": 1},
        "2026-12-03": {"fraud": 1, "technical": 1},
    },
    "failures_by_class": {"card": 3, "technical": 3, "customer": 1, "fraud": 1, "terminal": 1},
    # acknowledged after 3, 30, 1, 7 and 2 minutes: [60, 120, 180, 420, 1800] s.
    "time_to_acknowledge": _times(5, 180.0, 1800.0),
    # the client reached after 10 min (called) and 2 h (card replaced); not "unreachable".
    "time_to_first_contact": _times(2, 3900.0, 7200.0),
    "outcomes": _outcomes(
        called_client=1, card_replaced=1, client_unreachable=1, note_only=1, not_resolved=2
    ),
    "recovery": {"recovered": 2, "abandoned": 2, "pending": 1, "not_watched": 1},
    # Own classes only: ATM-2 has C-4 (card ×3) and C-5 (technical), ATM-1 C-1 (×2) and C-3.
    "terminals": [
        {"terminal_id": "ATM-2", "channel": "ATM", "clients": 2, "failures": 4, "managers": 2},
        {"terminal_id": "ATM-1", "channel": "ATM", "clients": 2, "failures": 3, "managers": 2},
    ],
    "managers": [
        {
            "manager_id": "RM-017",
            "manager_name": "Claire Martin",
            "failures": 3,
            "alerts": 2,
            "resolved": 2,
            "time_to_acknowledge": _times(2, 990.0, 1800.0),
            "time_to_first_contact": _times(1, 600.0, 600.0),
            "outcomes": _outcomes(called_client=1, client_unreachable=1),
            "recovery": {"recovered": 1, "abandoned": 1, "pending": 0, "not_watched": 0},
        },
        {
            "manager_id": "RM-042",
            "manager_name": "Jonas Weber",
            "failures": 4,
            "alerts": 2,
            "resolved": 1,
            "time_to_acknowledge": _times(2, 240.0, 420.0),
            "time_to_first_contact": _times(1, 7200.0, 7200.0),
            "outcomes": _outcomes(card_replaced=1, not_resolved=1),
            "recovery": {"recovered": 0, "abandoned": 0, "pending": 1, "not_watched": 1},
        },
        {
            "manager_id": "RM-002",
            "manager_name": "Li Wei",
            "failures": 2,
            "alerts": 2,
            "resolved": 1,
            "time_to_acknowledge": _times(1, 120.0, 120.0),
            "time_to_first_contact": _times(0, None, None),
            "outcomes": _outcomes(note_only=1, not_resolved=1),
            "recovery": {"recovered": 1, "abandoned": 1, "pending": 0, "not_watched": 0},
        },
    ],
}
