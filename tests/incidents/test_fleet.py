"""Scale-out storm control: per-partition partials in PostgreSQL, one judge, the same incidents as one detector."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import psycopg
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from monitor.alerts.store import AlertStore
from monitor.alerts.store.db import StoreUnavailable
from monitor.alerts.store.fleet_counts import FleetCounts
from monitor.config import isolated_settings
from monitor.incidents import IncidentChange, IncidentDetector, IncidentRules
from monitor.metrics import ScaleOutMetrics
from monitor.pipeline.fleet import FleetIncidents
from monitor.pipeline.watermark import EventClock, PartitionProgress
from monitor.testing.fixtures import wait_until
from tests.postgres import PostgresServer

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
RULES = IncidentRules.model_validate({
    "window_seconds": 60, "bucket_seconds": 10, "resolve_after_seconds": 60,
    "scopes": {
        "network": {"min_failures": 50, "min_cards": 25, "min_terminals": 10, "min_failure_ratio": 0.5},
        "issuer": {"min_failures": 8, "min_cards": 5, "min_terminals": 3, "min_failure_ratio": 0.5},
        "region": {"min_failures": 20, "min_cards": 10, "min_terminals": 5, "min_failure_ratio": 0.5},
        "terminal": {"min_failures": 4, "min_cards": 3, "min_failure_ratio": 0.5},
    },
})
PARTITIONS = 3
SCHEMA = {"event_id": pl.String, "occurred_at": pl.Datetime("us", "UTC"), "outcome": pl.String,
          "terminal_id": pl.String, "merchant_id": pl.String, "region": pl.String,
          "pan_masked": pl.String, "card_ref": pl.String, "partition": pl.Int32}


def rows() -> list[dict[str, Any]]:
    """An issuer outage over six terminals on three partitions, a failing ATM, healthy traffic, to 300 s."""
    out: list[dict[str, Any]] = []
    for second in range(0, 300, 2):
        for t in range(6):
            failing = 40 <= second < 100 and (second // 2 + t) % 3 == 0
            out.append({"event_id": f"e{second}-{t}", "occurred_at": T0 + timedelta(seconds=second + t * 0.1),
                        "outcome": "technical" if failing else "approved", "terminal_id": f"T{t}",
                        "merchant_id": None, "region": "North",
                        "pan_masked": ("412345" if failing else "499999") + f"******{second:04d}",
                        "card_ref": f"c{second}-{t}", "partition": t % PARTITIONS})
    for i in range(5):  # ATM T9 (partition 0) fails five clients within a minute
        out.append({"event_id": f"atm{i}", "occurred_at": T0 + timedelta(seconds=150 + i * 5),
                    "outcome": "terminal", "terminal_id": "T9", "merchant_id": None, "region": "South",
                    "pan_masked": f"555555******{i:04d}", "card_ref": f"atm-c{i}", "partition": 0})
    out.sort(key=lambda r: (r["occurred_at"], r["event_id"]))
    return out


def frame(data: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(data, schema=SCHEMA)


def vips(data: pl.DataFrame) -> pl.DataFrame:
    """The failures at a second divisible by four are VIPs' (a property of the event, not of the batch)."""
    return data.filter((pl.col("outcome") != "approved") & (pl.col("occurred_at").dt.second() % 4 == 0))


def one_detector(data: pl.DataFrame) -> list[IncidentChange]:
    """Today's single instance: one detector, every partition, read in one batch."""
    clock = EventClock(allowed_lateness_seconds=10)
    clock.advance(data.get_column("occurred_at"), data.get_column("partition").to_list(),
                  PartitionProgress(frozenset(range(PARTITIONS)), frozenset(range(PARTITIONS))))
    return IncidentDetector(RULES).observe(data.drop("partition"), watermark=clock.watermark_us,
                                           vip=vips(data).drop("partition"))


class Instance:
    """One instance's storm control as the app wires it, fed batches like the processor does."""

    def __init__(self, url: str, name: str, store: AlertStore | None = None, lease: float = 15.0) -> None:
        self.registry = CollectorRegistry()
        self.clock = EventClock(allowed_lateness_seconds=10)
        self.done = 0
        self.changes: list[IncidentChange] = []
        self.store = store

        async def record(changes: list[IncidentChange], fence: Callable[[Any], object]) -> None:
            if store is not None:
                await asyncio.to_thread(store.record, [], incidents=changes, incident_rules=RULES, fence=fence)
            else:
                await asyncio.to_thread(fence, None)
            self.changes += changes

        self.fleet = FleetIncidents(
            IncidentDetector(RULES), FleetCounts(url, "tx"), self.clock, owner=name, record=record,
            open_incidents=lambda: store.list_incidents(open_only=True) if store is not None else [],
            completed=lambda: self.done, partitions=lambda: PARTITIONS, lateness_seconds=10,
            stalled_seconds=60, lease_seconds=lease, metrics=ScaleOutMetrics(self.registry))

    def metric(self, name: str) -> float | None:
        """This instance's value of a ``cardmon_scale_out_*`` sample."""
        return self.registry.get_sample_value(name)

    def batch(self, data: pl.DataFrame, assigned: set[int], caught_up: set[int]) -> None:
        """Process one batch, then complete it (stored and committed)."""
        self.clock.advance(data.get_column("occurred_at"), data.get_column("partition").to_list(),
                           PartitionProgress(frozenset(assigned), frozenset(caught_up)))
        self.fleet.observe(data, vip=vips(data).drop("partition"))
        self.done += 1

    def close(self) -> None:
        self.fleet.counts.close()


@pytest.fixture
def url(postgres: PostgresServer) -> Iterator[str]:
    """A new PostgreSQL store (its schema created) for one test."""
    location = postgres.new_store_url()
    with AlertStore(location):
        pass
    yield location


def _partials(url: str) -> tuple[int, int]:
    counts = FleetCounts(url, "tx")
    try:
        row = counts._db.execute("SELECT count(*) AS n, coalesce(sum(keys), 0) AS f FROM fleet_partials").fetchone()
        return int(row["n"]), int(row["f"])
    finally:
        counts.close()


async def _one_partition_each_then_two_rounds(instances: list[Instance], data: pl.DataFrame) -> None:
    """Instance p reads partition p in one batch; then each runs two rounds, in turn."""
    for p, instance in enumerate(instances):
        instance.batch(data.filter(pl.col("partition") == p), {p}, {p})
    for _ in range(2):
        for instance in instances:
            await instance.fleet.round()


async def test_three_instances_judge_the_same_changes_as_one_detector(url: str) -> None:
    """Three instances, one partition each, writing partials and judging from PostgreSQL, make exactly one detector's changes."""
    data = frame(rows())
    expected = one_detector(data)
    assert {(c.kind, c.scope, c.scope_key) for c in expected} >= {
        ("opened", "issuer", "412345"), ("opened", "terminal", "T9")}
    instances = [Instance(url, f"i{p}") for p in range(PARTITIONS)]
    try:
        await _one_partition_each_then_two_rounds(instances, data)
        judged = [c for i in instances for c in i.changes]
        assert [i.fleet.judging for i in instances].count(True) == 1
        assert judged == expected
    finally:
        for instance in instances:
            instance.close()


async def test_a_replay_by_another_instance_writes_no_partial_twice(url: str) -> None:
    """A partition read again by its new owner after a rebalance adds nothing: its partials were written once."""
    data = frame(rows())
    first = Instance(url, "first")
    try:
        first.batch(data.filter(pl.col("partition") == 0), {0}, {0})
        await first.fleet.round()
        written = _partials(url)
        assert written[0] > 0 and written[1] > 0
        again = Instance(url, "again")
        try:
            again.batch(data.filter(pl.col("partition") == 0), {0}, {0})
            await again.fleet.round()
            assert _partials(url) == written
        finally:
            again.close()
    finally:
        first.close()


async def test_the_judge_is_replaced_when_its_lease_runs_out_and_the_counts_continue(url: str) -> None:
    """A judge that stops renewing is replaced after its lease; the new judge takes the open incident from the store and keeps counting."""
    data = frame(rows())
    expected = [c for c in one_detector(data) if c.scope == "issuer"]
    half = data.filter(pl.col("occurred_at") < T0 + timedelta(seconds=70))
    # The new owner reads on from the last committed offset of a bucket ``a`` had not
    # written yet (buckets up to 40-50 s were): a replay of 50-70 s, then the rest.
    rest = data.filter(pl.col("occurred_at") >= T0 + timedelta(seconds=50))
    with AlertStore(url) as store:
        a = Instance(url, "a", store, lease=0.5)
        b = Instance(url, "b", store, lease=0.5)
        try:
            a.batch(half, {0, 1, 2}, set())  # a reads every partition, judges the first half
            await a.fleet.round()
            assert a.fleet.judging and [c.kind for c in a.changes if c.scope == "issuer"] == ["opened"]
            b.batch(rest, {0, 1, 2}, {0, 1, 2})  # a is gone; b reads on (the group moved them)
            await b.fleet.round()
            assert not b.fleet.judging  # a's lease still runs
            await asyncio.sleep(0.6)
            await b.fleet.round()
            assert b.fleet.judging
        finally:
            a.close()
            b.close()
        issuer = [i for i in store.list_incidents() if i.scope == "issuer"]
    assert len(issuer) == 1
    assert issuer[0].started_at == expected[0].started_at
    assert issuer[0].failures == max(c.failures for c in expected)


async def _round_until_judging(instance: Instance, timeout: float = 30.0) -> None:
    """Run ``instance``'s rounds until it holds the judge's lease (the other's lease ran out)."""
    deadline = time.monotonic() + timeout
    while not instance.fleet.judging:
        assert time.monotonic() < deadline, f"{instance.fleet.owner} never became the judge"
        await instance.fleet.round()
        await asyncio.sleep(0.05)


async def test_a_judge_that_lost_its_lease_while_the_store_failed_drops_its_changes_and_the_new_judge_judges_them(
        url: str) -> None:
    """A judge whose store write fails until its lease runs out stores nothing of that round later, and its successor judges those buckets as one detector would."""
    data = frame(rows())
    expected = [c for c in one_detector(data) if c.scope == "issuer"]
    half = data.filter(pl.col("occurred_at") < T0 + timedelta(seconds=70))
    rest = data.filter(pl.col("occurred_at") >= T0 + timedelta(seconds=50))
    with AlertStore(url) as store:
        a = Instance(url, "a", store, lease=0.5)
        b = Instance(url, "b", store, lease=0.5)
        real = a.fleet._record
        down = True

        async def flaky(changes: list[IncidentChange], fence: Callable[[Any], object]) -> None:
            if down:
                raise StoreUnavailable("cannot reach the PostgreSQL alert store (test)")
            await real(changes, fence)

        a.fleet._record = flaky
        try:
            a.batch(half, {0, 1, 2}, set())  # a judges the first half; storing its changes fails
            with pytest.raises(StoreUnavailable):
                await a.fleet.round()
            assert a.fleet.judging
            b.batch(rest, {0, 1, 2}, {0, 1, 2})
            await _round_until_judging(b)  # a's lease ran out: b takes over from the store
            down = False  # a's store comes back: its changes of the lost round must not count
            assert await a.fleet.round() == []
            assert not a.fleet.judging and a.changes == []
            await b.fleet.round()
        finally:
            a.close()
            b.close()
        issuer = [i for i in store.list_incidents() if i.scope == "issuer"]
    assert [c.kind for c in b.changes if c.scope == "issuer"][:1] == ["opened"]
    assert len(issuer) == 1
    assert issuer[0].started_at == expected[0].started_at
    assert issuer[0].failures == max(c.failures for c in expected)


async def test_a_round_counts_as_judged_only_once_its_changes_are_stored(url: str) -> None:
    """A judge whose store write fails keeps its round's buckets unjudged in the store and stores them with its changes when the store is back."""
    data = frame(rows())
    half = data.filter(pl.col("occurred_at") < T0 + timedelta(seconds=70))
    with AlertStore(url) as store:
        a = Instance(url, "a", store)
        real = a.fleet._record
        down = True

        async def flaky(changes: list[IncidentChange], fence: Callable[[Any], object]) -> None:
            if down:
                raise StoreUnavailable("cannot reach the PostgreSQL alert store (test)")
            await real(changes, fence)

        a.fleet._record = flaky
        try:
            a.batch(half, {0, 1, 2}, set())
            with pytest.raises(StoreUnavailable):
                await a.fleet.round()
            assert _judged_through(url) is None
            down = False
            await a.fleet.round()  # the kept changes first, then the (empty) new round
            assert _judged_through(url) == a.fleet.detector.closed is not None
        finally:
            a.close()
        issuer = [i for i in store.list_incidents() if i.scope == "issuer"]
    assert [c.kind for c in a.changes if c.scope == "issuer"] == ["opened"]
    assert len(issuer) == 1


async def test_the_judge_metrics_say_which_instance_judges_and_how_far(url: str) -> None:
    """Exactly one instance reports itself the judge, with the end of the last bucket stored; the others report 0."""
    data = frame(rows())
    instances = [Instance(url, f"i{p}") for p in range(PARTITIONS)]
    try:
        await _one_partition_each_then_two_rounds(instances, data)
        judges = [i for i in instances if i.metric("cardmon_scale_out_judge") == 1]
        assert len(judges) == 1 and judges[0].fleet.judging
        through = _judged_through(url)
        assert through is not None
        assert judges[0].metric("cardmon_scale_out_judged_through_timestamp_seconds") == \
            (through + 1) * RULES.bucket_seconds
        for other in instances:
            if other is not judges[0]:
                assert other.metric("cardmon_scale_out_judge") == 0
                assert other.metric("cardmon_scale_out_judged_through_timestamp_seconds") == 0
            assert other.metric("cardmon_scale_out_rounds_failed_total") == 0
    finally:
        for instance in instances:
            instance.close()


def _judged_through(url: str) -> int | None:
    counts = FleetCounts(url, "tx")
    try:
        row = counts._db.execute("SELECT judged_through FROM fleet_judge WHERE topic = 'tx'").fetchone()
        return None if row is None else row["judged_through"]
    finally:
        counts.close()


def test_scale_out_without_a_postgresql_store_is_refused() -> None:
    """Turning scale-out on with the SQLite store fails at start, naming the setting it needs."""
    with pytest.raises(ValidationError, match="store_url"):
        isolated_settings(alerting={"scale_out": {"enabled": True}})


def test_a_lease_shorter_than_three_rounds_is_refused() -> None:
    """A judge's lease that would lapse between its renewals (once a round) is refused at start."""
    with pytest.raises(ValidationError, match="lease_seconds"):
        isolated_settings(alerting={"store_url": "postgresql://cardmon@db.example/cardmon",
                                    "scale_out": {"enabled": True, "lease_seconds": 0.1,
                                                  "interval_seconds": 30}})


async def test_failing_rounds_back_off_and_log_once_until_they_work_again(
        url: str, caplog: pytest.LogCaptureFixture) -> None:
    """While the store fails, rounds are retried with a doubling pause (not every interval) and logged once; recovery is logged."""
    instance = Instance(url, "a")
    instance.fleet.interval_seconds = 0.02
    attempts = 0
    working = instance.fleet.round

    async def failing() -> list[IncidentChange]:
        nonlocal attempts
        attempts += 1
        raise psycopg.OperationalError("connection refused")  # what a stopped PostgreSQL gives

    instance.fleet.round = failing  # type: ignore[method-assign]
    stop = asyncio.Event()
    caplog.set_level("WARNING", logger="monitor.pipeline.fleet")
    task = asyncio.create_task(instance.fleet.run(stop))
    try:
        await asyncio.sleep(1.5)  # 75 intervals; the pauses 0.02, 0.04, ... 0.64 allow ~7 attempts
        assert 3 <= attempts <= 8, attempts
        assert instance.metric("cardmon_scale_out_rounds_failed_total") == attempts
        failed = [r for r in caplog.records if "scale-out round failed" in r.getMessage()]
        assert len(failed) == 1, [r.getMessage() for r in failed]
        instance.fleet.round = working  # type: ignore[method-assign]
        await wait_until(lambda: any("work again" in r.getMessage() for r in caplog.records),
                         timeout=10, what="the recovery logged")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        instance.close()


def _final(changes: list[IncidentChange]) -> tuple[dict[str, IncidentChange], dict[str, list[str]]]:
    """Each incident's last state (without attributions) and the VIP failures attributed to it, in order."""
    last: dict[str, IncidentChange] = {}
    links: dict[str, list[str]] = {}
    for change in changes:
        last[change.incident_id] = replace(change, event_ids=())
        links.setdefault(change.incident_id, []).extend(change.event_ids)
    return last, links


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_outages_read_in_random_batches_end_the_same_as_one_detector(url: str, seed: int) -> None:
    """Random terminal, issuer and region outages, read by three instances in random batches and judged over many rounds, end as one detector judging them all."""
    rnd = random.Random(seed)
    data: list[dict[str, Any]] = []
    spells = [(rnd.randrange(0, 500), rnd.randrange(20, 120), rnd.choice(["T1", "T4", "412345", "South"]))
              for _ in range(4)]
    for n in range(3000):
        second = rnd.uniform(0, 700)
        t = rnd.randrange(9)
        terminal, region, iin = f"T{t}", "South" if t < 3 else "North", rnd.choice(["412345", "499999", "455555"])
        failing = rnd.random() < 0.05 or any(
            start <= second < start + length and what in (terminal, iin, region) and rnd.random() < 0.9
            for start, length, what in spells)
        data.append({"event_id": f"e{n}", "occurred_at": T0 + timedelta(seconds=second),
                     "outcome": "technical" if failing else "approved", "terminal_id": terminal,
                     "merchant_id": None, "region": region, "pan_masked": f"{iin}******{n % 10000:04d}",
                     "card_ref": f"c{rnd.randrange(400)}", "partition": t % PARTITIONS})
    data.sort(key=lambda r: (r["occurred_at"], r["event_id"]))
    everything = frame(data)
    expected = _final(one_detector(everything))
    assert expected[0], "the scenario opens incidents"
    instances = [Instance(url, f"r{p}") for p in range(PARTITIONS)]
    try:
        parts = [everything.filter(pl.col("partition") == p) for p in range(PARTITIONS)]
        offsets = [0] * PARTITIONS
        while any(offsets[p] < parts[p].height for p in range(PARTITIONS)):
            p = rnd.randrange(PARTITIONS)
            size = rnd.randrange(1, 200)
            chunk = parts[p].slice(offsets[p], size)
            offsets[p] += chunk.height
            instances[p].batch(chunk, {p}, {p} if offsets[p] >= parts[p].height else set())
            await instances[rnd.randrange(PARTITIONS)].fleet.round()
        for _ in range(2):
            for instance in instances:
                await instance.fleet.round()
        assert _final([c for i in instances for c in i.changes]) == expected
    finally:
        for instance in instances:
            instance.close()
