"""Made-up VIP failures and recovery rows for a store whose contents are known.

Shared by the report's tests (``tests/report/known.py``, every number worked out by
hand) and the script of the README's picture of the report
(``docs/report_screenshot.py``, a seeded sample week), so that both write the same
shapes:

* :func:`sample_failure`: one failed transaction of a VIP client, its channel and type
  from the terminal ID (``ATM…``: a cash withdrawal, else a purchase), its response code
  and status from the outcome class (``technical``: a timeout without a code);
* :func:`write_recovery_row`: an alert's recovery watch row, written straight into
  ``alert_recoveries`` (and its kind into ``alert_recovery_kinds``) inside a store
  transaction, as the watch would leave it (the watch itself is
  :mod:`monitor.pipeline.recovery`; these rows skip its matching so that a test states
  the status it wants).

Only the domain vocabulary is imported (this package sits at the bottom layer); the
transaction is passed in: ``with store._transaction() as conn: write_recovery_row(conn, ...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from monitor.domain import AlertEvent, Manager, VipFailure

__all__ = ["SAMPLE_PAN", "Executes", "sample_failure", "write_recovery_row"]

#: The masked card every sample failure carries (a test card range, never a real one).
SAMPLE_PAN: Final = "497010******0001"
# The watch window of the sample rows (the default alerting.recovery_window_seconds).
_WINDOW: Final = timedelta(minutes=30)
# How long after its failure a sample "recovered" watch was recovered.
_RECOVERED_AFTER: Final = timedelta(minutes=4)
_INSERT: Final = (
    "INSERT INTO alert_recoveries (alert_id, customer_id, manager_id, channel, txn_type, "
    "outcome, failed_terminal_id, first_failed_at, last_failed_at, deadline, status, "
    "recovered_at, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
# The kind that failed, as the watch files every kind of an alert (alert_recovery_kinds).
_INSERT_KIND: Final = (
    "INSERT INTO alert_recovery_kinds (alert_id, channel, txn_type, first_failed_at, "
    "failed_terminal_id) VALUES (?, ?, ?, ?, ?)")


class Executes(Protocol):
    """A store transaction, as far as :func:`write_recovery_row` uses it."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement with ``?`` placeholders."""


def sample_failure(event_id: str, at: datetime, *, customer_id: str, customer_name: str,
                   manager: Manager, outcome: str, terminal_id: str) -> VipFailure:
    """One failed transaction of a private-tier VIP client, severity ``high``, EUR 100.00.

    Args:
        event_id: the event's ID.
        at: when it failed (aware).
        customer_id: the VIP client.
        customer_name: their name.
        manager: their relationship manager.
        outcome: its outcome class (``technical``: a timeout without a response code;
            otherwise a completed decline, code ``05``).
        terminal_id: where (its first three letters are the channel: ``ATM`` gives a
            cash withdrawal, ``POS`` a purchase).
    """
    channel = terminal_id[:3]
    event = AlertEvent(
        event_id=event_id,
        occurred_at=at,
        channel=channel,
        terminal_id=terminal_id,
        merchant_id="M-1",
        txn_type="withdrawal" if channel == "ATM" else "purchase",
        amount_minor=10000,
        currency="EUR",
        response_code=None if outcome == "technical" else "05",
        outcome=outcome,
        status="timeout" if outcome == "technical" else "completed",
        response_meaning="made up",
        pan_masked=SAMPLE_PAN,
    )
    return VipFailure(event=event, customer_id=customer_id, customer_name=customer_name,
                      tier="private", manager=manager, severity="high",
                      suggested_action="Call the client.")


def write_recovery_row(conn: Executes, alert_id: str, failure: VipFailure, status: str) -> None:
    """Insert an alert's recovery watch row, as the watch leaves it after ``failure`` alone.

    The window is 30 minutes from the failure; ``recovered`` was recovered 4 minutes
    after it; a decided watch (``recovered``, ``abandoned``) was decided at its deadline.

    Args:
        conn: a store transaction (``AlertStore._transaction()``).
        alert_id: the alert (recorded already).
        failure: its first failure.
        status: ``watching``, ``recovered`` or ``abandoned``.
    """
    at = failure.event.occurred_at

    def stamp(moment: datetime | None) -> str | None:
        # The store's form (``utc_text``): UTC, fixed width, so SQL compares times as text.
        return moment.astimezone(UTC).isoformat(timespec="microseconds") if moment else None

    conn.execute(_INSERT, (
        alert_id, failure.customer_id, failure.manager.manager_id, failure.event.channel,
        failure.event.txn_type, failure.event.outcome, failure.event.terminal_id,
        stamp(at), stamp(at), stamp(at + _WINDOW), status,
        stamp(at + _RECOVERED_AFTER) if status == "recovered" else None,
        None if status == "watching" else stamp(at + _WINDOW)))
    conn.execute(_INSERT_KIND, (alert_id, failure.event.channel, failure.event.txn_type,
                                stamp(at), failure.event.terminal_id))
