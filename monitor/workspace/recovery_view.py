"""What the workspace shows of an alert's recovery watch: its state on the alert page, a badge in the list.

The recovery watch (:mod:`monitor.alerts.store.follow_ups` reads it) follows the client
after a failure alert: ``watching`` until its deadline, then ``recovered`` (an approved
transaction of the same kind: where, how long after) or ``abandoned``. The alert page
says which ("Watching until 14:32", "Recovered 4 min later at ATM-0042 (another
terminal)", "Abandoned: no successful cash withdrawal within 30 min") and whether the
manager's follow-up message was queued; the list marks recovered and abandoned alerts
with a small badge. Who sees an alert is unchanged (:mod:`~monitor.workspace.access`):
the watch is read only for alerts the session may already see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from monitor.alerts.messages.recovery import transaction_words
from monitor.alerts.store import RecoveryWatch
from monitor.i18n import Translator

__all__ = ["RecoveryShown", "recovery_shown"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryShown:
    """An alert's recovery watch as a page shows it.

    Attributes:
        status: ``watching``, ``recovered`` or ``abandoned``.
        txn: the kind of transaction watched, in the reader's language ("cash withdrawal").
        deadline: when the watch ends (aware; the page shows it in the reader's zone).
        window_minutes: the watch's length after the last failure, in whole minutes.
        recovered_at: the approved transaction's time, ``None`` unless recovered.
        minutes_after: whole minutes from the failure to it, ``None`` unless recovered.
        terminal: its terminal, ``None`` unless recovered.
        same_terminal: whether it is the terminal that failed.
        follow_up: 0 (not looked at yet), 1 (follow-up queued), 2 (not sent).
    """

    status: str
    txn: str
    deadline: datetime
    window_minutes: int
    recovered_at: datetime | None
    minutes_after: int | None
    terminal: str | None
    same_terminal: bool
    follow_up: int


def recovery_shown(watch: RecoveryWatch | None, translator: Translator) -> RecoveryShown | None:
    """The page's view of a recovery watch (``None`` when the alert has none)."""
    if watch is None:
        return None
    seconds = watch.recovery_seconds
    return RecoveryShown(
        status=watch.status, txn=transaction_words(watch.txn_type, translator),
        deadline=watch.deadline,
        window_minutes=round((watch.deadline - watch.last_failed_at).total_seconds() / 60),
        recovered_at=watch.recovered_at,
        minutes_after=round(seconds / 60) if seconds is not None else None,
        terminal=watch.recovery_terminal_id, same_terminal=watch.same_terminal,
        follow_up=watch.follow_up)
