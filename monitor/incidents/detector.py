"""Finding outages in the stream: one incident per failing terminal, merchant, region or issuer.

:class:`IncidentDetector` follows every classified batch frame (all transactions,
VIP or not) in event time, per scope key, in buckets of ``bucket_seconds``:

0. the scopes are, broadest first: network (the whole fleet), issuer (IIN), region,
   merchant, terminal;
1. count each key's transactions and its *outage failures* (the rules'
   ``outcome_classes``, by default technical and terminal: the bank's or the
   network's fault, not the client's), the distinct cards and terminals among them —
   aggregated with polars once per closed bucket (one polars call per batch that
   closes one, none for a batch that closes none: its VIP failures wait as a plan
   until then), never per event, for every key;
2. a bucket is judged only once it is **closed**: the watermark (see
   :mod:`monitor.pipeline.watermark`: the event time up to which every partition has been
   read) has passed its end. Closed buckets are taken one at a time, in order, the
   same way whatever batches they arrived in; within a bucket the scopes go broadest
   first and the keys in sorted order;
3. a key with no open incident whose *bad* buckets (failures at least
   ``min_failure_ratio`` of the bucket's transactions) within ``window_seconds``
   ending at the bucket just closed hold at least ``min_failures`` failures from
   ``min_cards`` cards and ``min_terminals`` terminals opens an incident that starts
   at its first failure in those buckets — unless a broader incident holds the key
   (a terminal of a failing region or merchant, anything while the network fails):
   that one explains it;
4. an open incident takes every failure of its key in each closed bucket; a bucket
   is *bad* when it has failures at the ratio, *good* when it has transactions below
   it, and an empty one says nothing (a dead ATM nobody uses has not recovered).
   Bad → good is a recovery, good → bad a relapse; ``flapping_min_relapses`` relapses
   mark it flapping. It stays one incident;
5. after a recovery, ``resolve_after_seconds`` without a bad bucket end it, at the
   bucket where that time is reached;
6. each VIP failure of an outage class (``vip`` frame) is *attributed* when its
   bucket closes, to the broadest incident that holds it (key matches, at or after
   one window before the incident's start, not after its end); one that no incident
   holds yet can still be taken by an incident that opens within two windows. The
   attributions ride on the changes (``event_ids``) in the order they were made,
   so the store links each alert to the first incident that took one of its events
   the same way every time.

Everything is a function of the closed buckets' contents, so the same events give
the same incidents, counts and attributions in any batches and any partition
interleaving; events of an already closed bucket are late and left out
(:attr:`IncidentDetector.late_events`). The detector's state is memory only;
:meth:`IncidentDetector.restore` takes the open incidents back from the store after
a restart. With several instances, each sees its own partitions: a terminal's
events (key = terminal ID) all reach one instance, a region's or an issuer's are
split between them — unless scale-out is on (:mod:`monitor.pipeline.fleet`): then one
instance's detector judges every partition's merged counts (:meth:`IncidentDetector.judge_merged`).

This module judges (scope evaluation: which closed bucket opens, feeds or ends an
incident, and which incident takes each VIP failure); the per-bucket aggregation is
:mod:`monitor.incidents.buckets`, the bookkeeping (per-key records, open and ended
incidents, what holds what, the phase rules) :mod:`monitor.incidents.tracking`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Final, Literal

import polars as pl

from monitor.frames import collect
from monitor.ids import incident_id_for
from monitor.incidents.buckets import (
    KEY_COLUMNS,
    BucketCounts,
    BucketRow,
    bucket_column,
    micros,
    scope_key,
)
from monitor.incidents.model import Incident, IncidentChange
from monitor.incidents.rules import IncidentRules, Scope, ScopeRule
from monitor.incidents.tracking import (
    IncidentBook,
    KeyState,
    OpenIncident,
    WaitingVip,
    is_bad,
    take_bucket,
    take_phase,
)

__all__ = ["IncidentDetector"]

_US: Final = 1_000_000
#: VIP failure plans that wait for a bucket to close at most (then they are queued): a
#: watermark that stays unknown must not grow one plan without bound.
_WAITING_PLANS: Final = 64


class IncidentDetector:
    """Turns classified batch frames into incident changes (see the module docstring).

    Args:
        rules: the ``incidents:`` rules.
    """

    def __init__(self, rules: IncidentRules) -> None:
        self.rules = rules
        self._book = IncidentBook(rules)  # every key's state, open and recently ended incidents
        self._counts = BucketCounts(rules)  # aggregates of the buckets not judged yet
        self._closed: int | None = None  # buckets up to this index have been judged
        self._vips: dict[int, list[WaitingVip]] = {}  # <bucket: VIP failures waiting for it to close>
        self._unclaimed: list[WaitingVip] = []  # VIP failures of closed buckets no incident took yet
        # Plans of the VIP failures of batches that closed no bucket (_vip_plan), not
        # queued yet: collected with the next batch that closes one (its one polars call).
        self._waiting: list[pl.LazyFrame] = []

    @property
    def late_events(self) -> int:
        """Events that arrived for a bucket already judged (left out)."""
        return self._counts.late_events

    def __repr__(self) -> str:
        return f"IncidentDetector(open={len(self.open_incidents())}, scopes={self.rules.ordered_scopes})"

    # -- feeding ---------------------------------------------------------------------

    def observe(self, frame: pl.DataFrame, *, watermark: datetime | int | None | Literal["latest"] = "latest",
                vip: pl.DataFrame | None = None) -> list[IncidentChange]:
        """Account one classified batch frame, judge the buckets it closes, return the changes.

        Args:
            frame: a batch frame with ``occurred_at`` (UTC), ``outcome``, ``terminal_id``,
                ``merchant_id``, ``region``, ``pan_masked`` and ``card_ref``.
            watermark: the event time every partition has been read up to (aware
                datetime, or µs since the epoch), from :class:`monitor.pipeline.watermark.EventClock`;
                ``None``: none yet (nothing is judged); ``"latest"``: the latest event
                time seen (one source, in order).
            vip: the batch's VIP failures to attribute: ``event_id`` and the columns
                above but ``card_ref`` (rows of other outcome classes are ignored).

        Returns:
            The changes of each bucket closed, bucket by bucket (opened, updated, ended
            within one); an ``updated`` change followed by another change of the same
            incident in this batch is left out unless it attributes VIP failures.
        """
        if frame.height:
            self._counts.add(frame, self._closed)
        if vip is not None and vip.height:
            # Queued only when a bucket closes (nothing reads them before): no polars call
            # for a batch that closes none, unless many plans wait (no watermark yet).
            self._waiting.append(self._vip_plan(vip))
            if len(self._waiting) >= _WAITING_PLANS:
                self._flush_waiting()
        if isinstance(watermark, datetime):
            watermark = micros(watermark)
        mark = self._counts.latest_us if watermark == "latest" else watermark
        # The last closed bucket: its end is at or before the watermark.
        closed = None if mark is None else mark // (self.rules.bucket_seconds * _US) - 1
        if closed is None or (self._closed is not None and closed <= self._closed):
            return []
        # The batch's one polars call: the buckets closed and the VIP failures to queue.
        rows, queued = self._counts.take_due(closed, self._book.states, also=self._take_waiting())
        if queued is not None:
            self._queue(queued)
        return self._judge(closed, rows)

    def _judge(self, closed: int, rows: dict[int, list[BucketRow]]) -> list[IncidentChange]:
        changes = self._close(closed, rows)
        self._closed = closed
        last = {change.incident_id: i for i, change in enumerate(changes)}
        return [c for i, c in enumerate(changes)
                if c.kind != "updated" or c.event_ids or last[c.incident_id] == i]

    # -- judging buckets merged elsewhere (several instances: monitor.pipeline.fleet) ---

    @property
    def closed(self) -> int | None:
        """The last bucket judged (index since the epoch), ``None`` before the first."""
        return self._closed

    def followed(self) -> list[tuple[Scope, str]]:
        """``(scope, key)`` of the keys the detector follows (a bucket without failures matters for them)."""
        return self._book.followed()

    def judge_merged(self, closed: int, rows: dict[int, list[BucketRow]],
                     vips: list[WaitingVip]) -> list[IncidentChange]:
        """Judge buckets up to ``closed`` from rows merged elsewhere, exactly as :meth:`observe` would.

        For the fleet judge of several instances (:mod:`monitor.pipeline.fleet`): the
        rows are every partition's partial counts merged per key and bucket, in the
        order and with the filter of :meth:`BucketCounts.take_due
        <monitor.incidents.buckets.BucketCounts.take_due>` (by bucket; in a bucket,
        scope broadest first, then key; buckets without failures only for keys
        :meth:`followed` or failing in these buckets).

        Args:
            closed: the last bucket closed for every partition; nothing is judged when
                it is not after :attr:`closed`.
            rows: ``{bucket: [BucketRow, ...]}`` of buckets after :attr:`closed` up to ``closed``.
            vips: the VIP failures of outage classes in those buckets (any order); one of
                an already judged bucket is left out.

        Returns:
            The changes, as :meth:`observe` returns them.
        """
        if self._closed is not None and closed <= self._closed:
            return []
        self._flush_waiting()
        for vip in vips:
            if self._closed is None or vip.bucket > self._closed:
                self._vips.setdefault(vip.bucket, []).append(vip)
        return self._judge(closed, rows)

    def resume(self, closed: int | None, incidents: list[Incident]) -> None:
        """Start over as a judge that takes over at ``closed``: forget everything, take back the open incidents.

        A judge taking over from another (or from itself after someone else judged)
        knows only what the store holds, as after a restart (:meth:`restore`).
        """
        self._book = IncidentBook(self.rules)
        self._counts = BucketCounts(self.rules)
        self._vips = {}
        self._waiting = []
        self._unclaimed = []
        self._closed = closed
        self._book.restore(incidents)

    def _vip_plan(self, vip: pl.DataFrame) -> pl.LazyFrame:
        """The plan of the VIP failures of outage classes to queue: bucket, time, event ID, keys."""
        size = self.rules.bucket_seconds
        return vip.lazy().filter(pl.col("outcome").is_in(self.rules.outcome_classes)).select(
            bucket_column(pl.col("occurred_at"), size).alias("bucket"),
            "occurred_at", pl.col("event_id").cast(pl.String),
            *[scope_key(scope).alias(f"k_{scope}") for scope in self.rules.ordered_scopes],
        )

    def _take_waiting(self) -> pl.LazyFrame | None:
        """The plan of every VIP failure waiting in ``_waiting`` (emptied: a plan that fails is not retried)."""
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return None
        return waiting[0] if len(waiting) == 1 else pl.concat(waiting, how="vertical")

    def _flush_waiting(self) -> None:
        """Queue the VIP failures waiting in ``_waiting`` now."""
        plan = self._take_waiting()
        if plan is not None:
            self._queue(collect(plan))

    def _queue(self, rows: pl.DataFrame) -> None:
        """Queue the VIP failures of :meth:`_vip_plan` until their bucket closes (an already judged one: late)."""
        scopes = self.rules.ordered_scopes
        for bucket, at, event_id, *keys in rows.iter_rows():
            if self._closed is not None and bucket <= self._closed:
                continue  # its bucket was judged: late
            self._vips.setdefault(bucket, []).append(WaitingVip(bucket, at, event_id, tuple(zip(scopes, keys))))

    # -- judging closed buckets --------------------------------------------------------

    def _close(self, closed: int, rows: dict[int, list[BucketRow]]) -> list[IncidentChange]:
        data = sorted(rows)
        changes: list[IncidentChange] = []
        step = self._closed if self._closed is not None else (data[0] - 1 if data else closed)
        index = 0
        while True:
            nexts = [b for b in (data[index] if index < len(data) else None, self._book.deadline(step))
                     if b is not None]
            if not nexts or min(nexts) > closed:
                break
            step = min(nexts)
            if index < len(data) and data[index] == step:
                index += 1
            changes += self._step(step, rows.get(step, []))
        for bucket in [b for b in self._vips if b <= closed]:  # attributed at their step
            self._unclaimed += self._vips.pop(bucket)
        return changes

    def _step(self, b: int, rows: list[BucketRow]) -> list[IncidentChange]:
        """Judge closed bucket ``b`` (its rows sorted by scope, broadest first, then key)."""
        failing: dict[Scope, set[str]] = {scope: set() for scope in self._book.states}
        touched: dict[Scope, set[str]] = {scope: set() for scope in self._book.states}
        for scope, key, volume, failures, first, last, cards, terminals, merchant, region in rows:
            states = self._book.states[scope]
            state = states.get(key)
            if state is None:
                if not failures:
                    continue
                state = states[key] = KeyState()
            state.buckets[b] = [volume, failures]
            touched[scope].add(key)
            if failures:
                assert first is not None and last is not None
                state.failing[b] = (first, last, cards, terminals)  # only ever unioned: no copy
                failing[scope].add(key)
                if scope == "terminal":  # a terminal belongs to one merchant and one region
                    if merchant is not None:
                        state.parents["merchant"] = merchant
                    if region is not None:
                        state.parents["region"] = region
        opened: list[IncidentChange] = []
        updated: list[IncidentChange] = []
        ended: list[IncidentChange] = []
        links: dict[str, list[str]] = {}  # <incident_id: VIP event IDs it takes, in order>
        for scope, states in self._book.states.items():
            rule = self.rules.scopes[scope]
            for key in sorted(failing[scope] | self._book.open[scope]):
                state = states[key]
                incident = state.incident
                if incident is None:
                    if self._maybe_open(scope, key, state, rule, b):
                        assert state.incident is not None
                        self._book.open[scope].add(key)
                        opened.append(self._book.change("opened", scope, key, state.incident))
                        updated += self._book.adopt(scope, key, state.incident.incident_id)
                        self._claim(scope, key, state.incident, b, links)
                    continue
                before = (incident.relapses, incident.recovered)
                take_bucket(state, b, rule.min_failure_ratio)
                if self._book.done(incident, b):
                    ended.append(self._book.end(scope, key, b))
                elif key in failing[scope] or before != (incident.relapses, incident.recovered):
                    updated.append(self._book.change("updated", scope, key, incident))
        for vip in sorted(self._vips.pop(b, []), key=lambda v: (v.at, v.event_id)):
            holder = self._book.holder(vip.at, vip.keys)
            if holder is None:
                self._unclaimed.append(vip)
            else:
                links.setdefault(holder[2], []).append(vip.event_id)
        changes = self._with_links(opened + updated + ended, links)
        keep = self._book.prune(b, touched)
        if keep is not None:
            self._unclaimed = [v for v in self._unclaimed if v.bucket >= keep]
        return changes

    def _with_links(self, changes: list[IncidentChange], links: dict[str, list[str]]
                    ) -> list[IncidentChange]:
        # Each attribution rides on the last change of its incident in this bucket (an
        # incident that holds a failure of this bucket has one, unless it ended earlier).
        last = {change.incident_id: i for i, change in enumerate(changes)}
        for incident_id, event_ids in links.items():
            if incident_id in last:
                i = last[incident_id]
                changes[i] = replace(changes[i], event_ids=changes[i].event_ids + tuple(event_ids))
                continue
            found = self._book.find(incident_id)
            if found is not None:
                scope, key, incident = found
                changes.append(self._book.change("updated", scope, key, incident, event_ids=tuple(event_ids)))
        return changes

    def _maybe_open(self, scope: Scope, key: str, state: KeyState, rule: ScopeRule, b: int) -> bool:
        # Only *bad* buckets count (failures at least min_failure_ratio of the bucket's
        # transactions): a blip of failures diluted in normal traffic is not an outage,
        # whatever the scope. The window is the one ending at the bucket just closed
        # (earlier windows were judged when their own last bucket closed).
        if not is_bad(state, b, rule):
            return False
        window = self.rules.window_buckets
        in_window = [c for c in sorted(state.failing) if b - window < c <= b and is_bad(state, c, rule)]
        if sum(state.buckets[c][1] for c in in_window) < rule.min_failures:
            return False
        # A broader incident explaining it is cheaper to ask first than the distinct
        # cards and terminals (a network outage: every key failing, thousands of cards).
        started = state.failing[in_window[0]][0]
        if self._book.covered(scope, state, started):
            return False
        cards: set[str] = set().union(*(state.failing[c][2] for c in in_window))
        terminals: set[str] = set().union(*(state.failing[c][3] for c in in_window))
        if len(cards) < rule.min_cards or len(terminals) < rule.min_terminals:
            return False
        # It holds every failure of its key from its first bad bucket of the window on.
        held = [c for c in state.failing if c >= in_window[0]]
        incident = state.incident = OpenIncident(
            incident_id=incident_id_for(scope, key, started), started_at=started,
            last_failure_at=max(state.failing[c][1] for c in held),
            failures=sum(state.buckets[c][1] for c in held),
            cards=set().union(*(state.failing[c][2] for c in held)),
            terminals=set().union(*(state.failing[c][3] for c in held)),
            last_bad=in_window[0],
        )
        for c in sorted(state.buckets):  # its phases so far: recoveries inside the window
            if c >= in_window[0]:
                take_phase(incident, c, state.buckets[c], rule.min_failure_ratio)
        return True

    def _claim(self, scope: Scope, key: str, incident: OpenIncident, b: int, links: dict[str, list[str]]) -> None:
        # A new incident takes the VIP failures of earlier buckets that no incident took
        # and that it holds (its key, from one window before its start).
        since = incident.started_at - timedelta(seconds=self.rules.window_seconds)
        taken = [v for v in self._unclaimed
                 if v.bucket < b and v.at >= since and dict(v.keys).get(scope) == key]
        if taken:
            links.setdefault(incident.incident_id, []).extend(
                v.event_id for v in sorted(taken, key=lambda v: (v.at, v.event_id)))
            gone = {id(v) for v in taken}
            self._unclaimed = [v for v in self._unclaimed if id(v) not in gone]

    # -- attribution -----------------------------------------------------------------

    def incident_for(self, *, occurred_at: datetime, outcome: str, terminal_id: str,
                     merchant_id: str | None, region: str | None, pan_masked: str | None) -> str | None:
        """Return the incident a failed transaction belongs to as of now, or ``None``.

        The broadest incident (network, issuer, region, merchant, terminal) whose key the
        transaction carries and that had started by ``occurred_at`` minus one window
        (open, or ended recently at or after ``occurred_at``). Only outage classes belong
        to incidents. The pipeline attributes VIP failures itself, when their bucket
        closes (``vip`` of :meth:`observe`); this is the same rule, for one question.
        """
        if outcome not in self.rules.outcome_classes:
            return None
        frame = pl.DataFrame({"terminal_id": [terminal_id], "merchant_id": [merchant_id],
                              "region": [region], "pan_masked": [pan_masked]},
                             schema=dict.fromkeys(KEY_COLUMNS, pl.String))
        scopes = self.rules.ordered_scopes
        keys = frame.select([scope_key(scope).alias(scope) for scope in scopes]).row(0)
        holder = self._book.holder(occurred_at, tuple(zip(scopes, keys)))
        return None if holder is None else holder[2]

    # -- restart ---------------------------------------------------------------------

    def restore(self, incidents: list[Incident]) -> None:
        """Take back the store's open incidents after a restart (their counts continue)."""
        self._book.restore(incidents)

    def open_incidents(self) -> list[tuple[Scope, str, str]]:
        """The open incidents as ``(scope, scope_key, incident_id)``."""
        return self._book.open_incidents()
