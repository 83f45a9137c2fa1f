"""Incident detection over batch frames, in event time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from monitor.incidents import IncidentChange, IncidentDetector, IncidentRules, buckets

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

RULES = IncidentRules.model_validate({
    "window_seconds": 120, "bucket_seconds": 10, "resolve_after_seconds": 120,
    "flapping_min_relapses": 3,
    "scopes": {
        "terminal": {"min_failures": 5, "min_cards": 3, "min_failure_ratio": 0.5},
        "issuer": {"min_failures": 10, "min_cards": 5, "min_terminals": 3, "min_failure_ratio": 0.5},
        "region": {"min_failures": 20, "min_cards": 10, "min_terminals": 5, "min_failure_ratio": 0.5},
    },
})


def txn(second: float, *, terminal: str = "ATM-1", outcome: str = "technical", card: str = "c1",
        region: str | None = "North", pan: str | None = None) -> dict[str, Any]:
    return {"occurred_at": T0 + timedelta(seconds=second), "outcome": outcome,
            "terminal_id": terminal, "merchant_id": None, "region": region,
            "pan_masked": pan, "card_ref": card}


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={
        "occurred_at": pl.Datetime("us", "UTC"), "outcome": pl.String, "terminal_id": pl.String,
        "merchant_id": pl.String, "region": pl.String, "pan_masked": pl.String, "card_ref": pl.String})


def observe(detector: IncidentDetector, rows: list[dict[str, Any]], until: float | None = None,
            vip: list[dict[str, Any]] | None = None) -> list[IncidentChange]:
    """Feed ``rows``; ``until``: the watermark (seconds after T0), else the latest event seen."""
    vips = None
    if vip is not None:
        vips = frame(vip).with_columns(pl.Series("event_id", [v["event_id"] for v in vip], dtype=pl.String))
    return detector.observe(frame(rows), vip=vips,
                            watermark="latest" if until is None else T0 + timedelta(seconds=until))


def test_an_atm_failing_every_client_opens_one_terminal_incident() -> None:
    """Five technical failures from five cards at one ATM within two minutes open one incident there."""
    detector = IncidentDetector(RULES)
    changes = observe(detector, [txn(i * 10, card=f"c{i}") for i in range(5)], until=50)
    assert [(c.kind, c.scope, c.scope_key, c.failures, c.cards) for c in changes] == [
        ("opened", "terminal", "ATM-1", 5, 5)]
    assert changes[0].started_at == T0
    assert changes[0].last_failure_at == T0 + timedelta(seconds=40)


def test_a_bucket_is_judged_only_once_the_watermark_has_passed_its_end() -> None:
    """Failures in a bucket the watermark has not passed yet change nothing; the watermark reaching its end opens the incident."""
    detector = IncidentDetector(RULES)
    assert observe(detector, [txn(i, card=f"c{i}") for i in range(5)], until=9) == []
    changes = observe(detector, [], until=10)
    assert [(c.kind, c.failures) for c in changes] == [("opened", 5)]


def test_one_client_retrying_is_not_an_outage() -> None:
    """Ten failures of one card at one ATM stay below the distinct-card threshold."""
    detector = IncidentDetector(RULES)
    assert observe(detector, [txn(i * 5, card="c1") for i in range(10)], until=600) == []


def test_declines_and_a_healthy_majority_do_not_open_an_incident() -> None:
    """Customer declines do not count, and technical failures under the ratio do not either."""
    detector = IncidentDetector(RULES)
    declines = [txn(i, card=f"c{i}", outcome="customer") for i in range(20)]
    assert observe(detector, declines, until=20) == []
    busy = [txn(100 + i, card=f"c{i}", outcome="approved") for i in range(30)]
    busy += [txn(100 + i + 0.5, card=f"d{i}") for i in range(6)]
    assert observe(detector, busy, until=600) == []


def test_failures_spread_over_batches_open_the_incident_when_the_bucket_that_crosses_closes() -> None:
    """The window spans batches: the fifth failure, in a later batch, opens the incident once its bucket closes."""
    detector = IncidentDetector(RULES)
    for i in range(4):
        assert observe(detector, [txn(i * 20, card=f"c{i}")]) == []
    assert observe(detector, [txn(90, card="c9")]) == []
    changes = observe(detector, [txn(100, card="ok", outcome="approved")])
    assert [c.kind for c in changes] == ["opened"]
    assert changes[0].started_at == T0


def test_failures_older_than_the_window_do_not_count() -> None:
    """Four failures, then a fifth three minutes later, are not five within two minutes."""
    detector = IncidentDetector(RULES)
    observe(detector, [txn(i, card=f"c{i}") for i in range(4)])
    assert observe(detector, [txn(180, card="c9")], until=600) == []


def test_an_issuer_outage_is_one_issuer_incident_and_takes_the_terminal_failures() -> None:
    """91s of one IIN across six terminals make an issuer incident that the failures are attributed to."""
    detector = IncidentDetector(RULES)
    rows = [txn(i * 2, terminal=f"POS-{i % 6}", card=f"c{i}", pan="412345******1234", region=None)
            for i in range(12)]
    changes = observe(detector, rows, until=20)
    assert [(c.kind, c.scope, c.scope_key, c.terminals) for c in changes] == [
        ("opened", "issuer", "412345", 6)]
    owner = detector.incident_for(occurred_at=T0 + timedelta(seconds=30), outcome="technical",
                                  terminal_id="POS-1", merchant_id=None, region=None,
                                  pan_masked="412345******9999")
    assert owner == changes[0].incident_id
    other_issuer = detector.incident_for(occurred_at=T0 + timedelta(seconds=30), outcome="technical",
                                         terminal_id="POS-1", merchant_id=None, region=None,
                                         pan_masked="555555******9999")
    assert other_issuer is None


def test_a_customer_decline_at_a_failing_terminal_belongs_to_no_incident() -> None:
    """Only outage classes are attributed: insufficient funds at a broken ATM is still the client's."""
    detector = IncidentDetector(RULES)
    observe(detector, [txn(i, card=f"c{i}") for i in range(5)], until=10)
    assert detector.incident_for(occurred_at=T0, outcome="customer", terminal_id="ATM-1",
                                 merchant_id=None, region=None, pan_masked=None) is None
    assert detector.incident_for(occurred_at=T0, outcome="terminal", terminal_id="ATM-1",
                                 merchant_id=None, region=None, pan_masked=None) is not None


def test_an_incident_ends_after_the_terminal_serves_clients_again_for_resolve_after() -> None:
    """Approvals for two minutes after the last failing bucket end the incident, at its last failure."""
    detector = IncidentDetector(RULES)
    opened = observe(detector, [txn(i, card=f"c{i}") for i in range(5)], until=10)[0]
    assert observe(detector, [txn(10 + i * 10, outcome="approved") for i in range(12)]) != []
    changes = observe(detector, [txn(130 + i * 10, outcome="approved") for i in range(3)])
    assert [(c.kind, c.incident_id) for c in changes] == [("ended", opened.incident_id)]
    assert changes[0].ended_at == T0 + timedelta(seconds=4)
    assert detector.open_incidents() == []


def test_a_silent_terminal_has_not_recovered() -> None:
    """No transactions at all after the failures keep the incident open, however long."""
    detector = IncidentDetector(RULES)
    observe(detector, [txn(i, card=f"c{i}") for i in range(5)], until=10)
    changes = observe(detector, [txn(3600, terminal="ATM-2", outcome="approved")], until=3610)
    assert [c.kind for c in changes if c.scope_key == "ATM-1"] == []
    assert [key for _, key, _ in detector.open_incidents()] == ["ATM-1"]


def test_a_terminal_flapping_every_30_seconds_for_10_minutes_is_one_flapping_incident() -> None:
    """Fail 30 s, recover 30 s, for ten minutes: one incident, marked flapping, never re-opened."""
    detector = IncidentDetector(RULES)
    changes = []
    for cycle in range(10):
        start = cycle * 60
        fail = [txn(start + s, card=f"c{cycle}-{s}") for s in range(0, 30, 3)]
        ok = [txn(start + 30 + s, outcome="approved", card=f"ok{cycle}-{s}") for s in range(0, 30, 3)]
        changes += observe(detector, fail)
        changes += observe(detector, ok)
    changes += observe(detector, [], until=600)
    opened = [c for c in changes if c.kind == "opened"]
    assert len(opened) == 1
    assert {c.incident_id for c in changes} == {opened[0].incident_id}
    last = changes[-1]
    assert last.flapping and last.relapses == 9
    assert last.failures == 100


def test_restore_continues_an_open_incident_after_a_restart() -> None:
    """Open incidents handed back after a restart keep their ID and take new failures."""
    from monitor.incidents import Incident

    first = IncidentDetector(RULES)
    opened = observe(first, [txn(i, card=f"c{i}") for i in range(5)], until=10)[0]
    restarted = IncidentDetector(RULES)
    restarted.restore([Incident(
        incident_id=opened.incident_id, scope="terminal", scope_key="ATM-1",
        started_at=opened.started_at, last_failure_at=opened.last_failure_at, ended_at=None,
        failures=5, cards=5, terminals=1, relapses=0, flapping=False, note=None,
        created_at=T0, updated_at=T0)])
    changes = observe(restarted, [txn(20, card="c7")], until=30)
    assert [(c.kind, c.incident_id, c.failures, c.cards) for c in changes] == [
        ("updated", opened.incident_id, 6, 6)]


def test_a_replayed_batch_spanning_more_than_a_window_still_finds_the_burst_inside_it() -> None:
    """Ten minutes of replayed traffic in one batch: the two-minute burst in the middle opens, and ends, its incident."""
    detector = IncidentDetector(RULES)
    rows = [txn(s, outcome="approved", card=f"ok{s}") for s in range(0, 600, 20)]
    rows += [txn(200 + s, card=f"c{s}") for s in range(0, 60, 4)]
    changes = observe(detector, rows, until=600)
    assert [(c.kind, c.scope_key) for c in changes] == [("opened", "ATM-1"), ("ended", "ATM-1")]
    assert changes[0].started_at == T0 + timedelta(seconds=200)
    assert changes[1].ended_at == T0 + timedelta(seconds=256) and changes[1].failures == 15
    inside = detector.incident_for(occurred_at=T0 + timedelta(seconds=230), outcome="technical",
                                   terminal_id="ATM-1", merchant_id=None, region=None, pan_masked=None)
    assert inside == changes[0].incident_id


def test_a_network_outage_opening_after_terminal_incidents_holds_them_as_children() -> None:
    """Terminal incidents that opened first become children of the network incident; later failures belong to it."""
    rules = IncidentRules.model_validate({
        "window_seconds": 120, "bucket_seconds": 10,
        "scopes": {"network": {"min_failures": 30, "min_cards": 20, "min_terminals": 4},
                   "terminal": {"min_failures": 5, "min_cards": 3}}})
    detector = IncidentDetector(rules)
    first = observe(detector, [txn(i, terminal="ATM-1", card=f"a{i}") for i in range(6)], until=10)
    assert [(c.kind, c.scope) for c in first] == [("opened", "terminal")]
    rows = [txn(10 + i, terminal=f"ATM-{i % 5}", card=f"n{i}") for i in range(30)]
    changes = observe(detector, rows, until=40)
    network = next(c for c in changes if c.scope == "network")
    assert network.kind == "opened"
    adopted = [c for c in changes if c.scope == "terminal" and c.parent_id == network.incident_id]
    assert {c.scope_key for c in adopted} == {"ATM-1"}
    assert not [c for c in changes if c.scope == "terminal" and c.kind == "opened"]
    owner = detector.incident_for(occurred_at=T0 + timedelta(seconds=35), outcome="technical",
                                  terminal_id="ATM-1", merchant_id=None, region=None, pan_masked=None)
    assert owner == network.incident_id


def test_a_short_blip_diluted_in_normal_traffic_is_no_incident_at_any_scope() -> None:
    """A few seconds of failures amid busy approvals stay under the ratio in every bucket: nothing opens, not even per terminal."""
    detector = IncidentDetector(RULES)
    rows = [txn(s / 4, terminal=f"ATM-{s % 6}", outcome="approved", card=f"ok{s}") for s in range(480)]
    rows += [txn(60 + s / 4, terminal=f"ATM-{s % 6}", card=f"blip{s}") for s in range(12)]
    assert observe(detector, rows, until=600) == []


def test_a_bucket_counts_every_transaction_of_its_key_whatever_the_batch_split() -> None:
    """Approvals of a bucket read in an earlier batch than its failures still dilute them: split or not, the same result."""
    rows_ok = [txn(s * 0.5, outcome="approved", card=f"ok{s}") for s in range(9)]
    rows_fail = [txn(5 + s * 0.5, card=f"c{s}") for s in range(5)]
    later = [txn(20 + s, card=f"d{s}") for s in range(5)]
    split = IncidentDetector(RULES)
    changes = observe(split, rows_ok, until=4) + observe(split, rows_fail, until=9)
    changes += observe(split, later, until=30)
    whole = IncidentDetector(RULES)
    assert changes == observe(whole, rows_ok + rows_fail + later, until=30)
    assert [(c.kind, c.started_at, c.failures) for c in changes] == [
        ("opened", T0 + timedelta(seconds=20), 5)]


def test_events_of_a_bucket_already_judged_are_late_and_left_out() -> None:
    """A failure arriving after the watermark passed its bucket changes nothing and is counted as late."""
    detector = IncidentDetector(RULES)
    observe(detector, [txn(i, card=f"c{i}") for i in range(4)], until=20)
    assert observe(detector, [txn(5, card="late")], until=30) == []
    assert detector.late_events == 1


def test_vip_failures_are_attributed_when_their_bucket_closes_in_the_order_taken() -> None:
    """A VIP failure before the incident opened is taken when it opens; one after, when its own bucket closes."""
    detector = IncidentDetector(RULES)
    early = [txn(i * 3, card=f"c{i}") | {"event_id": f"e{i}"} for i in range(2)]
    changes = observe(detector, early, vip=early, until=10)
    assert changes == []
    burst = [txn(10 + i, card=f"b{i}") | {"event_id": f"b{i}"} for i in range(4)]
    changes = observe(detector, burst, vip=burst[1:2], until=15)
    assert changes == []  # the bucket of the burst is not closed yet
    changes = observe(detector, [], until=20)
    assert [(c.kind, c.event_ids) for c in changes] == [("opened", ("e0", "e1", "b1"))]
    after = [txn(25, card="z") | {"event_id": "z"}]
    changes = observe(detector, after, vip=after, until=30)
    assert [(c.kind, c.event_ids) for c in changes] == [("updated", ("z",))]


def test_rows_aggregated_per_batch_or_once_per_closed_bucket_give_the_same_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether waiting rows are aggregated after every batch or only when a bucket closes, the changes and late counts are the same."""
    batches = []
    for cycle in range(6):  # flapping, a late failure, several terminals, batches within one bucket
        start = cycle * 60
        batches.append(([txn(start + s, terminal=f"ATM-{s % 4}", card=f"c{cycle}-{s}") for s in range(0, 30, 3)], None))
        batches.append(([txn(start + 30 + s, terminal=f"ATM-{s % 4}", outcome="approved", card=f"ok{cycle}-{s}")
                         for s in range(0, 15, 3)], None))
        batches.append(([txn(start + 45 + s, outcome="approved", card=f"ok2{cycle}-{s}") for s in range(0, 15, 3)],
                        start + 20))
        batches.append(([txn(start + 1, card=f"late{cycle}")], None))

    def run() -> tuple[list[IncidentChange], int]:
        detector = IncidentDetector(RULES)
        changes = [c for rows, until in batches for c in observe(detector, rows, until=until)]
        return changes + observe(detector, [], until=400), detector.late_events

    once = run()
    monkeypatch.setattr(buckets, "_COMPACT_ROWS", 1)
    per_batch = run()
    assert once == per_batch
    assert once[1] > 0 and any(c.kind == "opened" for c in once[0])


def test_vip_failures_of_a_batch_that_closes_no_bucket_cost_no_polars_call_and_are_attributed_the_same(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """VIP failures wait as plans until a bucket closes (no polars call before), then get the attributions of one whole batch."""
    burst = [txn(10 + i, card=f"b{i}") | {"event_id": f"b{i}"} for i in range(6)]
    whole = IncidentDetector(RULES)
    observe(whole, [], until=10)
    expected = observe(whole, burst, vip=burst, until=20)
    split = IncidentDetector(RULES)
    observe(split, [], until=10)  # the first bucket closed: the next ones close at 20 s
    calls: list[str] = []
    collect, collect_all = pl.LazyFrame.collect, pl.collect_all
    monkeypatch.setattr(pl.LazyFrame, "collect",
                        lambda self, *a, **k: calls.append("collect") or collect(self, *a, **k))
    monkeypatch.setattr(pl, "collect_all", lambda *a, **k: calls.append("collect_all") or collect_all(*a, **k))
    assert observe(split, burst[:3], vip=burst[:3], until=12) == []
    assert observe(split, burst[3:5], vip=burst[3:5], until=14) == []
    assert calls == []
    assert observe(split, burst[5:], vip=burst[5:], until=20) == expected
    assert calls == ["collect_all"]
    assert [c.event_ids for c in expected] == [tuple(f"b{i}" for i in range(6))]


def test_vip_failures_queued_early_because_many_waited_are_attributed_the_same(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """When more VIP failure plans wait than the bound (no watermark for long), queuing them early changes no attribution."""
    from monitor.incidents import detector as detector_module

    burst = [txn(10 + i, card=f"b{i}") | {"event_id": f"b{i}"} for i in range(6)]

    def run() -> list[IncidentChange]:
        detector = IncidentDetector(RULES)
        for row in burst:
            assert detector.observe(frame([row]), watermark=None,
                                    vip=frame([row]).with_columns(pl.lit(row["event_id"]).alias("event_id"))) == []
        return observe(detector, [], until=20)

    waiting_all = run()
    monkeypatch.setattr(detector_module, "_WAITING_PLANS", 2)
    assert run() == waiting_all
    assert [c.event_ids for c in waiting_all] == [tuple(f"b{i}" for i in range(6))]
