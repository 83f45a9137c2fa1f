"""Storm control's bookkeeping: per key, the open incident, recent buckets, ended ones; what holds what.

The records :class:`~monitor.incidents.detector.IncidentDetector` keeps in memory
(rebuilt from the store's open incidents after a restart) in one
:class:`IncidentBook`, and the rules that move an open incident along one closed
bucket at a time: a bucket is *bad* when its failures
are at least ``min_failure_ratio`` of its transactions, *good* when it has
transactions below it, and an empty one says nothing; bad → good is a recovery,
good → bad a relapse.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor.incidents.buckets import bucket_of
from monitor.incidents.model import Incident, IncidentChange, IncidentChangeKind
from monitor.incidents.rules import FLEET, IncidentRules, Scope, ScopeRule

__all__ = ["EndedIncident", "IncidentBook", "KeyState", "OpenIncident", "WaitingVip", "is_bad",
           "take_bucket", "take_phase"]


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
    #  refs, failing terminal IDs)>; the refs and IDs as the bucket's row gives them (a
    #  list, read only: only ever unioned, so not copied into a set per bucket)
    failing: dict[int, tuple[datetime, datetime, Collection[str], Collection[str]]] = field(default_factory=dict)
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


class IncidentBook:
    """Every followed scope key's state, the open incidents and the recently ended ones.

    What holds what: a narrower incident inside a broader one (:meth:`adopt`,
    :meth:`covered`), the incident holding a failure at a time (:meth:`holder`), and
    the changes to report (:meth:`change`). Memory only; :meth:`restore` takes the
    store's open incidents back after a restart.

    Args:
        rules: the ``incidents:`` rules.
    """

    def __init__(self, rules: IncidentRules) -> None:
        self.rules = rules
        self.states: dict[Scope, dict[str, KeyState]] = {s: {} for s in rules.ordered_scopes}
        self.open: dict[Scope, set[str]] = {s: set() for s in rules.ordered_scopes}  # keys with an incident
        self.rank = {scope: i for i, scope in enumerate(rules.ordered_scopes)}
        self.ended: dict[tuple[Scope, str], list[EndedIncident]] = {}  # recently ended, by key
        self._swept = 0  # bucket of the last full prune

    def followed(self) -> list[tuple[Scope, str]]:
        """``(scope, key)`` of every key followed now."""
        return [(scope, key) for scope, states in self.states.items() for key in states]

    def end(self, scope: Scope, key: str, b: int) -> IncidentChange:
        """End the key's open incident at closed bucket ``b``; the ``ended`` change."""
        state = self.states[scope][key]
        incident = state.incident
        assert incident is not None
        change = self.change("ended", scope, key, incident, ended_at=incident.last_failure_at)
        self.ended.setdefault((scope, key), []).append(EndedIncident(
            incident.incident_id, incident.started_at, incident.last_failure_at, b))
        state.incident = None
        self.open[scope].discard(key)
        return change

    def deadline(self, after: int) -> int | None:
        """The first bucket after ``after`` at which a recovered incident ends if nothing fails."""
        quiet = math.ceil(self.rules.resolve_after_seconds / self.rules.bucket_seconds)
        ends = [max(incident.last_bad + quiet, after + 1)
                for scope, keys in self.open.items() for key in keys
                if (incident := self.states[scope][key].incident) is not None and incident.recovered]
        return min(ends) if ends else None

    def done(self, incident: OpenIncident, b: int) -> bool:
        """Whether ``incident`` ends at closed bucket ``b`` (recovered, quiet long enough)."""
        quiet = (b - incident.last_bad) * self.rules.bucket_seconds
        return incident.recovered and quiet >= self.rules.resolve_after_seconds

    def change(self, kind: IncidentChangeKind, scope: Scope, key: str, incident: OpenIncident,
                ended_at: datetime | None = None, event_ids: tuple[str, ...] = ()) -> IncidentChange:
        """The change ``kind`` of ``incident`` as the store and the notices read it."""
        return IncidentChange(
            kind=kind, incident_id=incident.incident_id, scope=scope, scope_key=key,
            started_at=incident.started_at, last_failure_at=incident.last_failure_at,
            ended_at=ended_at, failures=incident.failures,
            cards=incident.base_cards + len(incident.cards),
            terminals=max(incident.base_terminals, len(incident.terminals)),
            relapses=incident.relapses,
            flapping=incident.relapses >= self.rules.flapping_min_relapses,
            parent_id=incident.parent_id, event_ids=event_ids,
        )

    def find(self, incident_id: str) -> tuple[Scope, str, OpenIncident] | None:
        """``(scope, key, incident)`` of the open incident ``incident_id``, if any."""
        for scope, keys in self.open.items():
            for key in keys:
                incident = self.states[scope][key].incident
                if incident is not None and incident.incident_id == incident_id:
                    return scope, key, incident
        return None

    def adopt(self, scope: Scope, key: str, parent_id: str) -> list[IncidentChange]:
        """Make the open narrower incidents inside ``(scope, key)`` its children; their changes."""
        # Narrower incidents that opened before this broader one and lie inside it
        # become its children (they keep their own counts; new failures go to it).
        adopted: list[IncidentChange] = []
        for narrower, states in self.states.items():
            if self.rank[narrower] <= self.rank[scope]:
                continue
            for child_key in sorted(self.open[narrower]):
                child = states[child_key]
                if child.incident is not None and child.parents.get(scope) == key \
                        and child.incident.parent_id is None:
                    child.incident.parent_id = parent_id
                    adopted.append(self.change("updated", narrower, child_key, child.incident))
        return adopted

    def covered(self, scope: Scope, state: KeyState, started: datetime) -> bool:
        """Whether a broader incident holds ``state``'s key from ``started`` on."""
        # A key inside an incident of a broader scope (a terminal of a failing region or
        # merchant, anything while the network fails) opens none of its own: the broader
        # one explains it, and its failures are attributed to it. "Inside" is in time as
        # well: the broader incident is open, or ended after `started`.
        early = timedelta(seconds=self.rules.window_seconds)
        for parent, parent_key in state.parents.items():
            if parent == scope or parent not in self.states:
                continue
            held = self.states[parent].get(parent_key)
            if held is not None and held.incident is not None \
                    and started >= held.incident.started_at - early:
                return True
            if any(e.started_at - early <= started <= e.ended_at
                   for e in self.ended.get((parent, parent_key), ())):
                return True
        return False

    def holder(self, at: datetime, keys: tuple[tuple[Scope, str | None], ...]
                ) -> tuple[Scope, str, str] | None:
        """``(scope, key, incident_id)`` of the broadest incident holding a failure at ``at``."""
        early = timedelta(seconds=self.rules.window_seconds)
        for scope, key in keys:
            if key is None:
                continue
            state = self.states[scope].get(key)
            if state is not None and state.incident is not None \
                    and at >= state.incident.started_at - early:
                return scope, key, state.incident.incident_id
            for ended in reversed(self.ended.get((scope, key), [])):
                if ended.started_at - early <= at <= ended.ended_at:
                    return scope, key, ended.incident_id
        return None

    def prune(self, b: int, touched: dict[Scope, set[str]]) -> int | None:
        """Forget what no later bucket needs; the oldest bucket kept after a full sweep, else ``None``."""
        # Forget buckets that have left the window of every later bucket; every window
        # (or two, for attribution), sweep every key. Deterministic: it only depends on
        # which buckets were judged.
        window = self.rules.window_buckets
        sweep = b - self._swept >= window
        for scope, states in self.states.items():
            for key in list(states) if sweep else list(touched[scope]):
                state = states[key]
                # Buckets are added in judging order: the oldest ones come first.
                buckets = state.buckets
                while buckets and (old := next(iter(buckets))) <= b - window:
                    del buckets[old]
                    state.failing.pop(old, None)
                if state.incident is None and not state.failing:
                    del states[key]
        if not sweep:
            return None
        self._swept = b
        keep = b - 2 * window - 1
        self.ended = {k: kept for k, ended in self.ended.items()
                      if (kept := [e for e in ended if e.bucket >= keep])}
        return keep

    def restore(self, incidents: list[Incident]) -> None:
        """Take back the store's open incidents after a restart (their counts continue)."""
        size = self.rules.bucket_seconds
        for incident in incidents:
            if not incident.is_open or incident.scope not in self.states:
                continue
            state = self.states[incident.scope].setdefault(incident.scope_key, KeyState())
            self.open[incident.scope].add(incident.scope_key)
            state.incident = OpenIncident(
                incident_id=incident.incident_id, started_at=incident.started_at,
                last_failure_at=incident.last_failure_at, failures=incident.failures,
                cards=set(), terminals=set(), relapses=incident.relapses,
                last_bad=bucket_of(incident.last_failure_at, size), base_cards=incident.cards,
                base_terminals=incident.terminals, parent_id=incident.parent_id,
            )

    def open_incidents(self) -> list[tuple[Scope, str, str]]:
        """The open incidents as ``(scope, scope_key, incident_id)``."""
        return [(scope, key, incident.incident_id) for scope, keys in self.open.items()
                for key in sorted(keys) if (incident := self.states[scope][key].incident) is not None]
