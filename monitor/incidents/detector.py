"""Finding outages in the stream: one incident per failing terminal, merchant, region or issuer.

:class:`IncidentDetector` follows every classified batch frame (all transactions,
VIP or not) in event time, per scope key, in buckets of ``bucket_seconds``:

0. the scopes are, broadest first: network (the whole fleet), issuer (IIN), region,
   merchant, terminal;
1. count each key's transactions and its *outage failures* (the rules'
   ``outcome_classes``, by default technical and terminal: the bank's or the
   network's fault, not the client's), the distinct cards and terminals among them —
   aggregated with polars per batch, never per event;
2. a key with no open incident whose *bad* buckets (failures at least
   ``min_failure_ratio`` of the bucket's transactions) within ``window_seconds`` hold
   at least ``min_failures`` failures from ``min_cards`` cards and ``min_terminals``
   terminals opens an incident that starts at its first failure in those buckets — unless a broader open incident holds
   the key (a terminal of a failing region or merchant, anything while the network
   fails): that one explains it;
3. an open incident takes every later failure of its key; the detector walks its
   closed buckets in order — a bucket is *bad* when it has failures at the ratio,
   *good* when it has transactions below it, and an empty one says nothing (a dead
   ATM nobody uses has not recovered). Bad → good is a recovery, good → bad a
   relapse; ``flapping_min_relapses`` relapses mark it flapping. It stays one
   incident;
4. after a recovery, ``resolve_after_seconds`` without a bad bucket end it.

A bucket is closed one bucket after the watermark (the latest event time seen) has
passed it, so events of other partitions up to one bucket late still count.
The detector's state is memory only; :meth:`IncidentDetector.restore` takes the open
incidents back from the store after a restart. With several instances, each sees
its own partitions: a terminal's events (key = terminal ID) all reach one
instance, a region's or an issuer's are split between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

import polars as pl

from monitor.incidents.model import Incident, IncidentChange, IncidentChangeKind, incident_id_for
from monitor.incidents.rules import FLEET, IncidentRules, Scope, ScopeRule

__all__ = ["IncidentDetector"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# One key's failures in one bucket of a batch: (bucket index, count, earliest time,
# latest time, card refs, terminal IDs).
_Failures = tuple[int, int, datetime, datetime, list[str], list[str]]
# The issuer of a card is its IIN: the first six digits of the (masked) PAN, ISO/IEC 7812-1.
_IIN: Final = r"^[0-9]{6}"


def _scope_key(scope: Scope) -> pl.Expr:
    match scope:
        case "network":
            return pl.lit(FLEET, dtype=pl.String)
        case "terminal":
            return pl.col("terminal_id")
        case "merchant":
            return pl.col("merchant_id")
        case "region":
            return pl.col("region")
        case "issuer":
            return pl.col("pan_masked").str.extract(f"({_IIN})", 1)


@dataclass(slots=True)
class _Open:
    incident_id: str
    started_at: datetime
    last_failure_at: datetime
    failures: int
    cards: set[str]
    terminals: set[str]
    relapses: int = 0
    recovered: bool = False  # phase: False while failing, True after a good bucket
    last_bad: int = 0  # bucket index of its latest bad bucket
    evaluated: int = 0  # buckets up to here have been walked
    base_cards: int = 0  # counts restored from the store (their sets are gone)
    base_terminals: int = 0
    parent_id: str | None = None  # the broader incident holding it


@dataclass(slots=True)
class _KeyState:
    # <bucket index: [transactions, outage failures]>
    buckets: dict[int, list[int]] = field(default_factory=dict)
    # <bucket index: (earliest failure time, latest failure time, failing card refs,
    #  failing terminal IDs)>
    failing: dict[int, tuple[datetime, datetime, set[str], set[str]]] = field(default_factory=dict)
    incident: _Open | None = None
    # The bucket in which the key started being followed, when earlier batches may have
    # had transactions of it in that bucket (not counted): that bucket never counts
    # towards opening an incident. None: every counted bucket is complete.
    born: int | None = None
    # <broader scope: its key that holds this one> (a terminal's merchant and region;
    # every key is in the network's one key).
    parents: dict[Scope, str] = field(default_factory=lambda: {"network": FLEET})


class IncidentDetector:
    """Turns classified batch frames into incident changes (see the module docstring).

    Args:
        rules: the ``incidents:`` rules.
    """

    def __init__(self, rules: IncidentRules) -> None:
        self.rules = rules
        self._states: dict[Scope, dict[str, _KeyState]] = {s: {} for s in rules.ordered_scopes}
        self._watermark: int | None = None  # latest bucket index seen
        self._ended: dict[tuple[Scope, str], tuple[str, datetime, datetime]] = {}  # this batch's

    def __repr__(self) -> str:
        return f"IncidentDetector(open={len(self.open_incidents())}, scopes={self.rules.ordered_scopes})"

    # -- feeding ---------------------------------------------------------------------

    def observe(self, frame: pl.DataFrame) -> list[IncidentChange]:
        """Account one classified batch frame and return what changed.

        Args:
            frame: a batch frame with ``occurred_at`` (UTC), ``outcome``, ``terminal_id``,
                ``merchant_id``, ``region``, ``pan_masked`` and ``card_ref``.

        Returns:
            One change per incident the batch opened, updated or ended, in that order.
        """
        self._ended = {}
        if frame.height == 0:
            return []
        size = self.rules.bucket_seconds
        failed = pl.col("failed")
        base = frame.select(
            (pl.col("occurred_at").dt.epoch("s") // size).cast(pl.Int64).alias("bucket"),
            pl.col("outcome").is_in(self.rules.outcome_classes).alias("failed"),
            "occurred_at", "card_ref", "terminal_id", "merchant_id", "region", "pan_masked")
        latest = int(base.get_column("bucket").max())  # type: ignore[arg-type]
        seen = self._watermark  # the latest bucket of earlier batches (None: this is the first)
        self._watermark = latest if self._watermark is None else max(self._watermark, latest)
        # One long frame for every scope: (scope, key, bucket) → the failures with their
        # times, cards, terminals, merchant and region; then the transactions.
        long = pl.concat([
            base.select(pl.lit(scope).alias("scope"), _scope_key(scope).alias("key"), pl.all())
            for scope in self.rules.ordered_scopes
        ]).drop_nulls("key")
        failing = long.filter(failed).group_by("scope", "key", "bucket").agg(
            pl.len().alias("failures"),
            pl.col("occurred_at").min().alias("first"), pl.col("occurred_at").max().alias("last"),
            pl.col("card_ref").drop_nulls().unique().alias("cards"),
            pl.col("terminal_id").unique().alias("terminals"),
            pl.col("merchant_id").drop_nulls().first().alias("merchant"),
            pl.col("region").drop_nulls().first().alias("region_of_failure"),
        )
        touched: dict[tuple[Scope, str], list[_Failures]] = {}
        for scope, key, b, failures, first, last, cards, terminals, merchant, region in failing.iter_rows():
            state = self._states[scope].get(key)
            if state is None:  # earlier batches may have had its transactions of bucket b
                partial = seen is not None and b <= seen
                state = self._states[scope][key] = _KeyState(born=b if partial else None)
            touched.setdefault((scope, key), []).append((b, failures, first, last, cards, terminals))
            if scope == "terminal":  # a terminal belongs to one merchant and one region
                state.parents.update({k: v for k, v in (("merchant", merchant), ("region", region))
                                      if v is not None})
        # Transactions per followed key (one with a failure in the window), failing or not.
        for scope, key, b, count in long.group_by("scope", "key", "bucket").len().iter_rows():
            state = self._states[scope].get(key)
            if state is not None:
                state.buckets.setdefault(b, [0, 0])[0] += count
        for (scope, key), rows in touched.items():
            self._add_failures(self._states[scope][key], rows)
        return self._evaluate(touched)

    @staticmethod
    def _add_failures(state: _KeyState, rows: list[_Failures]) -> None:
        incident = state.incident
        for b, count, first, last, cards, terminals in rows:
            state.buckets.setdefault(b, [0, 0])[1] += count
            earliest, latest, card_set, terminal_set = state.failing.get(b, (first, last, set(), set()))
            card_set.update(cards)
            terminal_set.update(terminals)
            state.failing[b] = (min(earliest, first), max(latest, last), card_set, terminal_set)
            if incident is not None:
                incident.failures += count
                incident.cards.update(cards)
                incident.terminals.update(terminals)
                incident.last_failure_at = max(incident.last_failure_at, last)

    def _evaluate(self, touched: dict[tuple[Scope, str], list[_Failures]]
                  ) -> list[IncidentChange]:
        assert self._watermark is not None
        window = self.rules.window_buckets
        closed = self._watermark - 1  # buckets up to here are complete (one bucket of lateness)
        opened: list[IncidentChange] = []
        updated: list[IncidentChange] = []
        ended: list[IncidentChange] = []
        for scope, states in self._states.items():
            rule = self.rules.scopes[scope]
            for key in list(states):
                state = states[key]
                # Only a key with new failures can cross a threshold.
                is_new = (state.incident is None and (scope, key) in touched
                          and self._maybe_open(scope, key, state, rule))
                incident = state.incident
                if incident is not None:
                    before = (incident.relapses, incident.recovered)
                    done = self._walk(state, closed, rule.min_failure_ratio)
                    if is_new:  # as it stands after walking the batch's buckets
                        opened.append(self._change("opened", scope, key, incident))
                        updated += self._adopt(scope, key, incident.incident_id)
                    if done:
                        ended.append(self._change("ended", scope, key, incident,
                                                  ended_at=incident.last_failure_at))
                        self._ended[(scope, key)] = (incident.incident_id, incident.started_at,
                                                     incident.last_failure_at)
                        state.incident = None
                    elif not is_new and ((scope, key) in touched
                                         or before != (incident.relapses, incident.recovered)):
                        updated.append(self._change("updated", scope, key, incident))
                # Forget what has left the window (and, for an open incident, was walked).
                horizon = self._watermark - window
                if state.incident is not None:
                    horizon = min(horizon, state.incident.evaluated)
                for b in [b for b in state.buckets if b <= horizon]:
                    del state.buckets[b]
                    state.failing.pop(b, None)
                if state.incident is None and not state.failing:
                    del states[key]
        return opened + updated + ended

    def _adopt(self, scope: Scope, key: str, parent_id: str) -> list[IncidentChange]:
        # Narrower incidents that opened before this broader one and lie inside it
        # become its children (they keep their own counts; new failures go to it).
        adopted: list[IncidentChange] = []
        for narrower, states in self._states.items():
            if self.rules.ordered_scopes.index(narrower) <= self.rules.ordered_scopes.index(scope):
                continue
            for child_key, child in states.items():
                if child.incident is not None and child.parents.get(scope) == key \
                        and child.incident.parent_id is None:
                    child.incident.parent_id = parent_id
                    adopted.append(self._change("updated", narrower, child_key, child.incident))
        return adopted

    def _covered(self, scope: Scope, state: _KeyState, started: datetime) -> bool:
        # A key inside an incident of a broader scope (a terminal of a failing region or
        # merchant, anything while the network fails) opens none of its own: the broader
        # one explains it, and its failures are attributed to it. "Inside" is in time as
        # well: the broader incident is open, or ended in this batch after `started`.
        early = timedelta(seconds=self.rules.window_seconds)
        for parent, parent_key in state.parents.items():
            if parent == scope or parent not in self._states:
                continue
            held = self._states[parent].get(parent_key)
            if held is not None and held.incident is not None \
                    and started >= held.incident.started_at - early:
                return True
            ended = self._ended.get((parent, parent_key))
            if ended is not None and ended[1] - early <= started <= ended[2]:
                return True
        return False

    def _maybe_open(self, scope: Scope, key: str, state: _KeyState, rule: ScopeRule) -> bool:
        # Only *bad* buckets count (failures at least min_failure_ratio of the bucket's
        # transactions): a blip of failures diluted in normal traffic is not an outage,
        # whatever the scope. Every window that ends at a bad bucket is tried, earliest
        # first: a batch of replayed traffic can span more event time than one window.
        window = self.rules.window_buckets
        # A bucket whose earlier transactions were not counted (the key's first, seen
        # mid-bucket) has a ratio that cannot be trusted: it never counts.
        bad = [b for b in sorted(state.failing) if b != state.born
               and state.buckets[b][1] >= rule.min_failure_ratio * state.buckets[b][0]]
        for end in bad:
            in_window = [b for b in bad if end - window < b <= end]
            failures = sum(state.buckets[b][1] for b in in_window)
            if failures < rule.min_failures:
                continue
            cards: set[str] = set().union(*(state.failing[b][2] for b in in_window))
            terminals: set[str] = set().union(*(state.failing[b][3] for b in in_window))
            if len(cards) < rule.min_cards or len(terminals) < rule.min_terminals:
                continue
            started = state.failing[in_window[0]][0]
            if self._covered(scope, state, started):
                return False
            # It opened at `end`; it also holds the failures after its start that this
            # batch brought.
            held = [b for b in state.failing if b >= in_window[0]]
            state.incident = _Open(
                incident_id=incident_id_for(scope, key, started), started_at=started,
                last_failure_at=max(state.failing[b][1] for b in held),
                failures=sum(state.buckets[b][1] for b in held),
                cards=set().union(*(state.failing[b][2] for b in held)),
                terminals=set().union(*(state.failing[b][3] for b in held)),
                last_bad=end, evaluated=in_window[0] - 1,
            )
            return True
        return False

    def _walk(self, state: _KeyState, closed: int, min_ratio: float) -> bool:
        """Walk the incident's closed buckets in order; return whether it has ended."""
        incident = state.incident
        assert incident is not None
        for b in range(incident.evaluated + 1, closed + 1):
            volume, failures = state.buckets.get(b, (0, 0))
            if volume == 0:
                continue
            if failures and failures >= min_ratio * volume:
                if incident.recovered:
                    incident.relapses += 1
                incident.recovered = False
                incident.last_bad = max(incident.last_bad, b)
            else:
                incident.recovered = True
        incident.evaluated = max(incident.evaluated, closed)
        quiet = (closed - incident.last_bad) * self.rules.bucket_seconds
        return incident.recovered and quiet >= self.rules.resolve_after_seconds

    def _change(self, kind: IncidentChangeKind, scope: Scope, key: str, incident: _Open,
                ended_at: datetime | None = None) -> IncidentChange:
        return IncidentChange(
            kind=kind, incident_id=incident.incident_id, scope=scope, scope_key=key,
            started_at=incident.started_at, last_failure_at=incident.last_failure_at,
            ended_at=ended_at, failures=incident.failures,
            cards=incident.base_cards + len(incident.cards),
            terminals=max(incident.base_terminals, len(incident.terminals)),
            relapses=incident.relapses,
            flapping=incident.relapses >= self.rules.flapping_min_relapses,
            parent_id=incident.parent_id,
        )

    # -- attribution -----------------------------------------------------------------

    def incident_for(self, *, occurred_at: datetime, outcome: str, terminal_id: str,
                     merchant_id: str | None, region: str | None, pan_masked: str | None) -> str | None:
        """Return the incident a failed transaction belongs to, or ``None``.

        The broadest open incident (issuer, region, merchant, terminal) whose key the
        transaction carries and that had started by ``occurred_at`` minus one window;
        an incident that ended in the last batch still takes the failures up to its end.
        Only outage classes belong to incidents.
        """
        if outcome not in self.rules.outcome_classes:
            return None
        keys: dict[Scope, str | None] = {
            "network": FLEET,
            "issuer": pan_masked[:6] if pan_masked and pan_masked[:6].isdigit() else None,
            "region": region, "merchant": merchant_id, "terminal": terminal_id,
        }
        early = timedelta(seconds=self.rules.window_seconds)
        for scope in self.rules.ordered_scopes:
            key = keys[scope]
            if key is None:
                continue
            state = self._states[scope].get(key)
            if (state is not None and state.incident is not None
                    and occurred_at >= state.incident.started_at - early):
                return state.incident.incident_id
            ended = self._ended.get((scope, key))
            if ended is not None and ended[1] - early <= occurred_at <= ended[2]:
                return ended[0]
        return None

    # -- restart ---------------------------------------------------------------------

    def restore(self, incidents: list[Incident]) -> None:
        """Take back the store's open incidents after a restart (their counts continue)."""
        size = self.rules.bucket_seconds
        for incident in incidents:
            if not incident.is_open or incident.scope not in self._states:
                continue
            last = _bucket_of(incident.last_failure_at, size)
            state = self._states[incident.scope].setdefault(incident.scope_key, _KeyState())
            state.incident = _Open(
                incident_id=incident.incident_id, started_at=incident.started_at,
                last_failure_at=incident.last_failure_at, failures=incident.failures,
                cards=set(), terminals=set(), relapses=incident.relapses,
                last_bad=last, evaluated=last, base_cards=incident.cards,
                base_terminals=incident.terminals, parent_id=incident.parent_id,
            )

    def open_incidents(self) -> list[tuple[Scope, str, str]]:
        """The open incidents as ``(scope, scope_key, incident_id)``."""
        return [(scope, key, state.incident.incident_id)
                for scope, states in self._states.items()
                for key, state in states.items() if state.incident is not None]


def _bucket_of(at: datetime, size: int) -> int:
    return int((at - _EPOCH).total_seconds()) // size


