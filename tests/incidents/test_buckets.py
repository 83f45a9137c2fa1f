"""Storm control's bucket counts against a plain-Python reference, whatever the batch split."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.incidents import IncidentRules, buckets
from monitor.incidents.buckets import BucketCounts, BucketRow, micros
from monitor.incidents.rules import FLEET

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
RULES = IncidentRules.model_validate({
    "window_seconds": 60, "bucket_seconds": 10,
    "scopes": {scope: {"min_failures": 1, "min_cards": 1, "min_failure_ratio": 0.5}
               for scope in ("network", "issuer", "region", "merchant", "terminal")},
})
SCHEMA = {"occurred_at": pl.Datetime("us", "UTC"), "outcome": pl.String, "terminal_id": pl.String,
          "merchant_id": pl.String, "region": pl.String, "pan_masked": pl.String, "card_ref": pl.String}
_IIN = re.compile(r"[0-9]{6}")

rows_strategy = st.lists(st.fixed_dictionaries({
    "occurred_at": st.integers(0, 60_000_000).map(lambda us: T0 + timedelta(microseconds=us)),
    "outcome": st.sampled_from(["approved", "technical", "terminal", "customer"]),
    "terminal_id": st.sampled_from(["ATM-1", "ATM-2", "POS-9", "é-3"]),
    "merchant_id": st.sampled_from([None, "M1", "M2"]),
    "region": st.sampled_from([None, "North", "South"]),
    "pan_masked": st.sampled_from([None, "411111******1111", "550000******0004", "41111x******1111",
                                   "12345", "４１１１１１******1111"]),
    "card_ref": st.sampled_from([None, "c1", "c2", "c3", "c4"]),
}), min_size=1, max_size=60)


def keys_of(row: dict[str, Any]) -> dict[str, str | None]:
    """Each scope's key of one row, as the detector defines it."""
    pan = row["pan_masked"]
    iin = _IIN.match(pan) if pan is not None else None
    return {"network": FLEET, "issuer": iin.group(0) if iin else None, "region": row["region"],
            "merchant": row["merchant_id"], "terminal": row["terminal_id"]}


def reference(rows: list[dict[str, Any]], closed: int, followed: dict[str, set[str]]) -> dict[int, list[BucketRow]]:
    """What ``take_due`` must give for ``rows`` (all on time), computed row by row."""
    size = RULES.bucket_seconds
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        b = micros(row["occurred_at"]) // (size * 1_000_000)
        if b > closed:
            continue
        for scope, key in keys_of(row).items():
            if key is not None:
                groups[scope, key, b].append(row)
    failing_keys = {(s, k) for (s, k, _), members in groups.items()
                    if any(r["outcome"] in RULES.outcome_classes for r in members)}
    rank = {scope: i for i, scope in enumerate(RULES.ordered_scopes)}
    out: dict[int, list[BucketRow]] = {}
    for scope, key, b in sorted(groups, key=lambda g: (g[2], rank[g[0]], g[1])):
        if key not in followed[scope] and (scope, key) not in failing_keys:
            continue
        members = groups[scope, key, b]
        failed = [r for r in members if r["outcome"] in RULES.outcome_classes]
        merchants = [r["merchant_id"] for r in failed if r["merchant_id"] is not None]
        regions = [r["region"] for r in failed if r["region"] is not None]
        out.setdefault(b, []).append((
            scope, key, len(members), len(failed),
            min((r["occurred_at"] for r in failed), default=None),
            max((r["occurred_at"] for r in failed), default=None),
            sorted({r["card_ref"] for r in failed if r["card_ref"] is not None}),
            sorted({r["terminal_id"] for r in failed if r["terminal_id"] is not None}),
            min(merchants, default=None), min(regions, default=None)))
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy, cuts=st.lists(st.integers(1, 59), max_size=5),
       compact=st.sampled_from([1, 7, 20_000]), close_at=st.integers(-1, 6),
       follow=st.sets(st.sampled_from(["ATM-1", "POS-9", "M2", "North"])))
def test_take_due_gives_the_reference_rows_whatever_the_batches_and_compaction(
        monkeypatch: pytest.MonkeyPatch, rows: list[dict[str, Any]], cuts: list[int], compact: int,
        close_at: int, follow: set[str]) -> None:
    """The closed buckets' rows equal a row-by-row reference for any batch split, compaction threshold and followed keys."""
    monkeypatch.setattr(buckets, "_COMPACT_ROWS", compact)
    counts = BucketCounts(RULES)
    bounds = [0, *sorted(c for c in cuts if c < len(rows)), len(rows)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        if end > start:
            counts.add(pl.DataFrame(rows[start:end], schema=SCHEMA), None)
    first = micros(T0) // 10_000_000
    closed = first + close_at
    followed = {scope: set() for scope in RULES.ordered_scopes}
    for key in follow:
        scope = "terminal" if key.startswith(("ATM", "POS")) else "merchant" if key.startswith("M") else "region"
        followed[scope].add(key)
    assert counts.take_due(closed, followed)[0] == reference(rows, closed, followed)
    # What stays waiting is taken whole at the next close, and only once.
    later = reference([r for r in rows if micros(r["occurred_at"]) // 10_000_000 > closed], first + 10, followed)
    assert counts.take_due(first + 10, followed)[0] == later
    assert counts.take_due(first + 20, followed)[0] == {}


def test_rows_of_a_bucket_already_judged_are_counted_late_and_left_out() -> None:
    """Events of a bucket up to ``closed`` at the time they arrive are late: counted, never aggregated."""
    counts = BucketCounts(RULES)
    first = micros(T0) // 10_000_000
    rows = [{"occurred_at": T0 + timedelta(seconds=s), "outcome": "technical", "terminal_id": "ATM-1",
             "merchant_id": None, "region": None, "pan_masked": None, "card_ref": "c1"} for s in (1, 12, 25)]
    counts.add(pl.DataFrame(rows, schema=SCHEMA), first)
    assert counts.late_events == 1
    due, _ = counts.take_due(first + 2, {scope: set() for scope in RULES.ordered_scopes})
    assert sorted(due) == [first + 1, first + 2]
    assert [(r[0], r[2]) for r in due[first + 1]] == [("network", 1), ("terminal", 1)]


def test_take_partials_names_the_scopes_and_merges_every_key() -> None:
    """The partials of one partition name each scope and hold every key's counts, failing or not."""
    counts = BucketCounts(RULES)
    rows = [{"occurred_at": T0 + timedelta(seconds=s), "outcome": outcome, "terminal_id": terminal,
             "merchant_id": "M1", "region": "North", "pan_masked": "411111******1111", "card_ref": f"c{s}"}
            for s, outcome, terminal in ((1, "technical", "ATM-1"), (2, "approved", "ATM-2"),
                                         (15, "approved", "ATM-1"))]
    counts.add(pl.DataFrame(rows, schema=SCHEMA), None)
    first = micros(T0) // 10_000_000
    totals, failing = counts.take_partials(first)
    assert sorted(totals.select("scope", "key", "transactions", "failures").rows()) == [
        ("issuer", "411111", 2, 1), ("merchant", "M1", 2, 1), ("network", FLEET, 2, 1), ("region", "North", 2, 1),
        ("terminal", "ATM-1", 1, 1), ("terminal", "ATM-2", 1, 0)]
    assert sorted(failing.select("scope", "key", "cards", "terminals").rows()) == [
        ("issuer", "411111", ["c1"], ["ATM-1"]), ("merchant", "M1", ["c1"], ["ATM-1"]),
        ("network", FLEET, ["c1"], ["ATM-1"]), ("region", "North", ["c1"], ["ATM-1"]),
        ("terminal", "ATM-1", ["c1"], ["ATM-1"])]
    later, _ = counts.take_partials(first + 1)
    assert later.height == 5 and set(later.get_column("bucket")) == {first + 1}


def test_a_batch_that_closes_a_bucket_costs_storm_control_one_polars_call(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Observing a batch that closes a bucket and carries VIP failures makes one polars call (each releases the GIL)."""
    from monitor.incidents import IncidentDetector

    detector = IncidentDetector(RULES)
    rows = [{"occurred_at": T0 + timedelta(seconds=s), "outcome": "technical", "terminal_id": f"ATM-{s % 3}",
             "merchant_id": "M1", "region": "North", "pan_masked": "411111******1111", "card_ref": f"c{s}"}
            for s in range(0, 30, 2)]
    detector.observe(pl.DataFrame(rows[:5], schema=SCHEMA), watermark=None)
    calls: list[str] = []
    collect, collect_all = pl.LazyFrame.collect, pl.collect_all
    monkeypatch.setattr(pl.LazyFrame, "collect",
                        lambda self, *a, **k: calls.append("collect") or collect(self, *a, **k))
    monkeypatch.setattr(pl, "collect_all", lambda *a, **k: calls.append("collect_all") or collect_all(*a, **k))
    vip = pl.DataFrame(rows[5:], schema=SCHEMA).with_columns(pl.Series("event_id", [f"e{i}" for i in range(10)]))
    changes = detector.observe(pl.DataFrame(rows[5:], schema=SCHEMA), watermark=T0 + timedelta(seconds=20), vip=vip)
    assert calls == ["collect_all"]
    assert "opened" in [c.kind for c in changes]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy,
       steps=st.lists(st.tuples(st.integers(1, 8), st.sampled_from([0, 1, 1, 1, 2])), max_size=16),
       compact=st.sampled_from([1, 7, 20_000]))
def test_closes_between_batches_give_the_reference_rows_and_late_counts(
        monkeypatch: pytest.MonkeyPatch, rows: list[dict[str, Any]], steps: list[tuple[int, int]],
        compact: int) -> None:
    """Batches and closes interleaved (a close before any waiting row is due included) give each close the reference rows."""
    monkeypatch.setattr(buckets, "_COMPACT_ROWS", compact)
    counts = BucketCounts(RULES)
    followed: dict[str, set[str]] = {scope: set() for scope in RULES.ordered_scopes}
    first = micros(T0) // 10_000_000
    waiting: list[dict[str, Any]] = []  # on-time rows not taken yet
    late, judged, start = 0, None, 0
    for size, ahead in [*steps, (len(rows), 10)]:  # ahead: buckets closed by this step (0: none)
        batch = rows[start:start + size]
        start += len(batch)
        if batch:
            counts.add(pl.DataFrame(batch, schema=SCHEMA), judged)
            for row in batch:
                if judged is not None and micros(row["occurred_at"]) // 10_000_000 <= judged:
                    late += 1
                else:
                    waiting.append(row)
        if ahead == 0:
            continue
        closed = (first - 2 if judged is None else judged) + ahead  # the first close is before any row
        assert counts.take_due(closed, followed)[0] == reference(waiting, closed, followed)
        waiting = [r for r in waiting if micros(r["occurred_at"]) // 10_000_000 > closed]
        judged = closed
    assert counts.late_events == late


def test_a_close_before_the_earliest_waiting_bucket_makes_no_polars_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """When every waiting row is of a bucket after the one closing, nothing is aggregated and the rows stay for later."""
    counts = BucketCounts(RULES)
    first = micros(T0) // 10_000_000
    rows = [{"occurred_at": T0 + timedelta(seconds=s), "outcome": "technical", "terminal_id": "ATM-1",
             "merchant_id": None, "region": None, "pan_masked": None, "card_ref": "c1"} for s in (31, 35)]
    counts.add(pl.DataFrame(rows, schema=SCHEMA), None)
    calls: list[str] = []
    collect_all = pl.collect_all
    monkeypatch.setattr(pl, "collect_all", lambda *a, **k: calls.append("collect_all") or collect_all(*a, **k))
    followed: dict[str, set[str]] = {scope: set() for scope in RULES.ordered_scopes}
    assert counts.take_due(first + 2, followed) == ({}, None)
    assert calls == []
    due, _ = counts.take_due(first + 3, followed)
    assert [(r[0], r[2], r[3]) for r in due[first + 3]] == [("network", 2, 2), ("terminal", 2, 2)]


def test_a_late_row_does_not_hide_a_row_of_the_next_bucket_in_its_batch() -> None:
    """A batch with late rows and rows of the bucket right after the judged ones: those are due at the next close."""
    counts = BucketCounts(RULES)
    first = micros(T0) // 10_000_000
    followed: dict[str, set[str]] = {scope: set() for scope in RULES.ordered_scopes}
    rows = [{"occurred_at": T0 + timedelta(seconds=s), "outcome": "technical", "terminal_id": "ATM-1",
             "merchant_id": None, "region": None, "pan_masked": None, "card_ref": "c1"} for s in (5, 15)]
    assert counts.take_due(first, followed) == ({}, None)
    counts.add(pl.DataFrame(rows, schema=SCHEMA), first)
    assert counts.late_events == 1
    due, _ = counts.take_due(first + 1, followed)
    assert [(r[0], r[2]) for r in due[first + 1]] == [("network", 1), ("terminal", 1)]


def test_compacted_buckets_left_after_a_close_are_due_at_the_next_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Aggregates compacted ahead of their close stay due bucket by bucket after part of them was taken."""
    monkeypatch.setattr(buckets, "_COMPACT_ROWS", 1)
    counts = BucketCounts(RULES)
    first = micros(T0) // 10_000_000
    followed: dict[str, set[str]] = {scope: set() for scope in RULES.ordered_scopes}
    rows = [{"occurred_at": T0 + timedelta(seconds=s), "outcome": "technical", "terminal_id": "ATM-1",
             "merchant_id": None, "region": None, "pan_masked": None, "card_ref": "c1"} for s in (15, 25, 35)]
    counts.add(pl.DataFrame(rows, schema=SCHEMA), None)
    assert [sorted(counts.take_due(first + b, followed)[0]) for b in (1, 2, 3)] == [
        [first + 1], [first + 2], [first + 3]]
