"""What storm control keeps per key between buckets: the open incident, recent buckets, ended ones.

The records :class:`~monitor.incidents.detector.IncidentDetector` keeps in memory
(rebuilt from the store's open incidents after a restart), and the rules that move an
open incident along one closed bucket at a time: a bucket is *bad* when its failures
are at least ``min_failure_ratio`` of its transactions, *good* when it has
transactions below it, and an empty one says nothing; bad → good is a recovery,
good → bad a relapse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from monitor.incidents.rules import FLEET, Scope, ScopeRule

__all__ = ["EndedIncident", "KeyState", "OpenIncident", "WaitingVip", "is_bad", "take_bucket",
           "take_phase"]


@dataclass(slots=True)
class OpenIncident:
    """An incident that has not ended: its counts so far and its phase."""

    incident_id: str
    started_at: datetime
    last_failure_at: datetime
    failures: int
    cards: set[str]
    terminals: set[str]
    relapses: int = 0
    recovered: bool = False  # phase: False while failing, True after a good bucket
    last_bad: int = 0  # bucket index of its latest bad bucket
    base_cards: int = 0  # counts restored from the store (their sets are gone)
    base_terminals: int = 0
    parent_id: str | None = None  # the broader incident holding it


@dataclass(slots=True)
class KeyState:
    """One scope key's recent closed buckets, its open incident, and the keys that hold it."""

    # <closed bucket index: [transactions, outage failures]>
    buckets: dict[int, list[int]] = field(default_factory=dict)
    # <closed bucket index: (earliest failure time, latest failure time, failing card
    #  refs, failing terminal IDs)>
    failing: dict[int, tuple[datetime, datetime, set[str], set[str]]] = field(default_factory=dict)
    incident: OpenIncident | None = None
    # <broader scope: its key that holds this one> (a terminal's merchant and region;
    # every key is in the network's one key).
    parents: dict[Scope, str] = field(default_factory=lambda: {"network": FLEET})


@dataclass(frozen=True, slots=True)
class EndedIncident:
    """An incident that ended recently (it still holds failures up to its end)."""

    incident_id: str
    started_at: datetime
    ended_at: datetime
    bucket: int  # the closed bucket at which it ended


@dataclass(frozen=True, slots=True)
class WaitingVip:
    """A VIP failure of an outage class, waiting for an incident to take it."""

    bucket: int
    at: datetime
    event_id: str
    keys: tuple[tuple[Scope, str | None], ...]  # (scope, its key) in the rules' scope order


def is_bad(state: KeyState, b: int, rule: ScopeRule) -> bool:
    """Whether closed bucket ``b`` of the key has failures at ``rule``'s ratio."""
    volume, failures = state.buckets.get(b, (0, 0))
    return failures > 0 and failures >= rule.min_failure_ratio * volume


def take_phase(incident: OpenIncident, b: int, counts: list[int], min_ratio: float) -> None:
    """Move ``incident``'s phase along closed bucket ``b`` (``[transactions, failures]``)."""
    volume, failures = counts
    if volume == 0:
        return
    if failures and failures >= min_ratio * volume:
        if incident.recovered:
            incident.relapses += 1
        incident.recovered = False
        incident.last_bad = max(incident.last_bad, b)
    else:
        incident.recovered = True


def take_bucket(state: KeyState, b: int, min_ratio: float) -> None:
    """Take closed bucket ``b`` into the key's open incident: its failures and its phase."""
    incident = state.incident
    assert incident is not None
    counts = state.buckets.get(b)
    if counts is None:
        return
    detail = state.failing.get(b)
    if detail is not None:
        _, last, cards, terminals = detail
        incident.failures += counts[1]
        incident.cards.update(cards)
        incident.terminals.update(terminals)
        incident.last_failure_at = max(incident.last_failure_at, last)
    take_phase(incident, b, counts, min_ratio)
