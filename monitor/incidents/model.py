"""Values of storm control: an incident and what one batch did to it.

An incident ID is ``"in-"`` + 20 base32 characters of SHA-256 over its scope, key and
start (:func:`incident_id_for`); a message about it to one manager is an *incident
notice*, ``"ic-"`` + 20 base32 characters (:func:`notice_id_for`). Base32, never hex
or digits: an ID must not hold a digit run a PAN scrubber would mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from monitor.incidents.rules import Scope

__all__ = [
    "Incident",
    "IncidentChange",
    "IncidentChangeKind",
    "NoticeKind",
]

#: ``opened``: the thresholds were crossed; ``updated``: more failures, a recovery or a
#: relapse; ``ended``: the scope stayed healthy for ``resolve_after_seconds``.
IncidentChangeKind = Literal["opened", "updated", "ended"]
#: ``opened``: the first message to a manager; ``update``: clients affected after it;
#: ``resolved``: the incident ended (only to managers who opted in); ``escalated``: to
#: the manager's backup or team lead, naming the clients nobody acknowledged.
NoticeKind = Literal["opened", "update", "resolved", "escalated"]








@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentChange:
    """What one batch did to one incident (the store applies it with the batch's alerts).

    Attributes:
        kind: see :data:`IncidentChangeKind`.
        incident_id: the detector's ID (:func:`incident_id_for`); the store keeps the
            first open incident of a scope key if another instance opened it first.
        scope: ``terminal``, ``merchant``, ``region``, ``issuer`` or ``network``.
        scope_key: terminal ID, merchant ID, region, issuer IIN (six digits) or ``fleet``.
        started_at: event time of its first failure (UTC).
        last_failure_at: event time of its latest failure (UTC).
        ended_at: event time it ended (its last failure), ``None`` while open.
        failures: outage failures counted in it.
        cards: distinct cards among them.
        terminals: distinct terminals among them.
        relapses: times it failed again after recovering.
        flapping: ``relapses`` reached the rules' ``flapping_min_relapses``.
        parent_id: the broader incident that opened later and holds this one (a
            failing terminal inside a network outage), ``None`` if none.
        event_ids: VIP failures (event IDs) the detector attributed to this incident
            with this change, in the order it did; the store links each one's alert
            to the incident unless an earlier attribution linked it elsewhere.
    """

    kind: IncidentChangeKind
    incident_id: str
    scope: Scope
    scope_key: str
    started_at: datetime
    last_failure_at: datetime
    ended_at: datetime | None = None
    failures: int
    cards: int
    terminals: int
    relapses: int = 0
    flapping: bool = False
    parent_id: str | None = None
    event_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Incident:
    """An incident as the store holds it.

    Times ``started_at``, ``last_failure_at`` and ``ended_at`` are event time (UTC);
    ``created_at``/``updated_at`` are wall clock (UTC). ``alert_count`` and
    ``manager_count`` count the VIP alerts linked to it and their managers;
    ``parent_id`` names the broader incident that holds it, if one opened later.
    """

    incident_id: str
    scope: Scope
    scope_key: str
    started_at: datetime
    last_failure_at: datetime
    ended_at: datetime | None
    failures: int
    cards: int
    terminals: int
    relapses: int
    flapping: bool
    note: str | None
    created_at: datetime
    updated_at: datetime
    alert_count: int = 0
    manager_count: int = 0
    parent_id: str | None = None

    @property
    def is_open(self) -> bool:
        """Whether the incident has not ended."""
        return self.ended_at is None

    def describe(self) -> str:
        """A short title: ``"ATM/POS terminal T-0042"``, ``"issuer 412345"``..."""
        names = {"terminal": "terminal", "merchant": "merchant", "region": "region",
                 "issuer": "card issuer (IIN)", "network": "card network or switch:"}
        return f"{names[self.scope]} {self.scope_key}"
