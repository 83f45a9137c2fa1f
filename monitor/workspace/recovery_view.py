"""What the workspace shows of an alert's recovery watch: its state on the page, a list badge.

The recovery watch (:mod:`monitor.alerts.store.recoveries` reads it) follows the client
after a failure alert: ``watching`` until its deadline, then ``recovered`` (an approved
transaction of the same kind: where, how long after) or ``abandoned``. The alert page
says which ("Watching until 14:32", "Recovered 4 min later at ATM-0042 (another
terminal)", under a minute "Recovered less than a minute later at ...", "Abandoned: no
successful cash withdrawal within 30 min") and whether a follow-up message was sent to
the manager; the list marks recovered and abandoned alerts with a small badge. Who sees
an alert is unchanged (:mod:`~monitor.workspace.access`):
the watch is read only for alerts the session may already see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from monitor.alerts.messages.recovery import kinds_words, transaction_words
from monitor.alerts.store import Recovery
from monitor.i18n import Translator

__all__ = ["RecoveryShown", "recovery_shown"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryShown:
    """An alert's recovery watch as a page shows it.

    Attributes:
        status: ``watching``, ``recovered`` or ``abandoned``.
        txn: the kind of transaction watched, in the reader's language ("cash withdrawal");
            while watching or abandoned, every kind that failed in the alert ("purchase
            at a card terminal or cash withdrawal at an ATM"); recovered, the one completed.
        deadline: when the watch ends (aware; the page shows it in the reader's zone).
        window_minutes: the watch's length after the last failure, in whole minutes.
        recovered_at: the approved transaction's time, ``None`` unless recovered.
        minutes_after: whole minutes from the first failure to it (rounded, at least 1),
            ``None`` unless recovered.
        within_a_minute: whether it came less than 60 s after that failure (the page
            says "less than a minute later", as the follow-up message does).
        terminal: its terminal, ``None`` unless recovered.
        same_terminal: whether it is the terminal that failed.
        follow_up: whether a follow-up message was queued for the manager.
    """

    status: str
    txn: str
    deadline: datetime
    window_minutes: int
    recovered_at: datetime | None
    minutes_after: int | None
    within_a_minute: bool
    terminal: str | None
    same_terminal: bool
    follow_up: bool


def recovery_shown(recovery: Recovery | None, translator: Translator, *,
                   kinds: Sequence[tuple[str, str]] = ()) -> RecoveryShown | None:
    """The page's view of a recovery watch (``None`` when the alert has none).

    Args:
        recovery: the alert's watch.
        translator: the reader.
        kinds: every ``(channel, txn_type)`` that failed in the alert, in the order they
            first failed (:func:`~monitor.alerts.messages.recovery.kinds_in_order`);
            empty: the watch's first failure's kind only.
    """
    if recovery is None:
        return None
    seconds = recovery.seconds_to_recovery
    several = recovery.status != "recovered" and len(set(kinds)) > 1
    return RecoveryShown(
        status=recovery.status,
        txn=(kinds_words(kinds, translator) if several
             else transaction_words(recovery.completed_txn_type, translator)),
        deadline=recovery.window_ends_at,
        window_minutes=round(
            (recovery.window_ends_at - recovery.last_failed_at).total_seconds() / 60),
        recovered_at=recovery.recovered_at,
        minutes_after=max(1, round(seconds / 60)) if seconds is not None else None,
        within_a_minute=seconds is not None and seconds < 60,
        terminal=recovery.terminal_id, same_terminal=bool(recovery.same_terminal),
        follow_up=recovery.follow_up)
