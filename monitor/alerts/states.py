"""An alert's lifecycle states and history: the values the store records and the API reports.

States (``alerts.state``), and what moves an alert between them::

    open ──(a person's channel accepted it)──▶ notified ──(ack)──▶ acknowledged ──(resolve)──▶ resolved
      │  ▲                                        ▲
      │  └──(resent)── failed ─(a later delivery to a person is sent)─┘
      └─(every delivery to a person failed)──▶ failed
    open / notified / failed ──(ack)──▶ acknowledged

``notified`` means a person's channel accepted a message about the alert: e-mail
(the relay took it), webhook (2xx), Apprise -- to the client's manager, their backup
or the escalation's recipient, or an incident notice or rate-cap summary naming it.
A sink that only records (``console``, ``jsonl``) or the operations sink
(``alertmanager``) never makes an alert notified, nor does the operations fallback.

``escalated`` and ``fallback`` are events, not states: they are written to the
history and the alert keeps its state. Every change and every event is one row of
the alert's history: what happened, the state before and after, who (a manager ID,
an operator's name, ``cardmon``), when (UTC), through which channel (``pipeline``,
``email``, ``webhook``, ``api``, ``link``, ``cli``, ``workspace``, ``escalation``,
``fallback``)
and a note.

Rules: acknowledging twice is one transition (the second is a no-op); resolving
needs an acknowledgement first (someone owned the alert) and resolving twice is a
no-op; an acknowledged or resolved alert never escalates.

This module is the vocabulary at the bottom of the alerts wing: the store
(:mod:`monitor.alerts.store`) records these values, the escalation policy
(:mod:`monitor.alerts.lifecycle`) and the jobs (:mod:`monitor.alerts.jobs`) act on
them; it imports nothing of the wing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from monitor.errors import CardmonError

__all__ = [
    "ALERT_STATES",
    "CONTACT_OUTCOMES",
    "MAX_NOTE_CHARS",
    "RESOLUTION_OUTCOMES",
    "SYSTEM_ACTOR",
    "AlertNotFoundError",
    "AlertState",
    "HistoryAction",
    "HistoryEntry",
    "LifecycleError",
    "StateConflictError",
    "Transition",
]

AlertState = Literal["open", "notified", "acknowledged", "resolved", "failed"]
ALERT_STATES: tuple[AlertState, ...] = ("open", "notified", "acknowledged", "resolved", "failed")
#: What a history row records. ``resent``: someone put failed deliveries back in the
#: outbox; ``fallback``: a delivery kept failing and the fallback (the backup manager,
#: operations) was told; ``corrected``: schema 5 recomputed a state (see schema.py).
HistoryAction = Literal["opened", "notified", "failed", "escalated", "acknowledged", "resolved",
                        "resent", "fallback", "corrected"]
#: What a person did about an alert when resolving it (``alert_history.outcome`` of a
#: ``resolved`` row, schema 7; ``None`` when the resolution gave only a note).
RESOLUTION_OUTCOMES: Final[tuple[str, ...]] = (
    "called_client", "reversal_or_refund_arranged", "card_replaced",
    "terminal_reported_to_operations", "client_unreachable", "no_action_needed",
)
#: The outcomes that mean the client was reached: a resolution with one of them is the
#: alert's first contact (time to first contact = its time minus the alert's recording).
CONTACT_OUTCOMES: Final[frozenset[str]] = frozenset({
    "called_client", "reversal_or_refund_arranged", "card_replaced"})
#: The longest note a history row keeps (characters); the API and the CLI refuse longer ones.
MAX_NOTE_CHARS: Final = 2000
#: Who writes the rows the monitor itself causes.
SYSTEM_ACTOR: Final = "cardmon"


class LifecycleError(CardmonError):
    """An acknowledgement or resolution could not be applied (nothing changed)."""


class AlertNotFoundError(LifecycleError, LookupError):
    """No alert has this ID."""


class StateConflictError(LifecycleError):
    """The alert's state does not allow this change (e.g. resolve before acknowledge).

    Attributes:
        state: the alert's current state.
    """

    def __init__(self, message: str, state: AlertState) -> None:
        super().__init__(message)
        self.state = state


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """One row of an alert's history.

    Attributes:
        history_id: increasing row ID (the order things happened in).
        alert_id: the alert.
        action: what happened.
        from_state: the state before (``None`` for ``opened``).
        to_state: the state after (equal to ``from_state`` for an event such as
            ``escalated`` or a second delivery's ``notified``).
        actor: manager ID, operator name or ``cardmon``.
        via: the channel it came through (``pipeline``, ``email``, ``api``, ``link``, ``cli``...).
        note: free text (PAN-scrubbed), ``None`` if none.
        at: when it happened (UTC, aware).
        outcome: of a ``resolved`` row, what was done (one of :data:`RESOLUTION_OUTCOMES`),
            ``None`` if not given (and on every other row).
    """

    history_id: int
    alert_id: str
    action: HistoryAction
    from_state: AlertState | None
    to_state: AlertState
    actor: str
    via: str
    note: str | None
    at: datetime
    outcome: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """The result of an acknowledgement or resolution.

    Attributes:
        alert_id: the alert.
        state: its state after the call.
        changed: ``False`` when it was already in that state (idempotent repeat).
        entry: the history row written, ``None`` when nothing changed.
    """

    alert_id: str
    state: AlertState
    changed: bool
    entry: HistoryEntry | None = None
