"""Event time across partitions: late events, the watermark, caught-up and stalled partitions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from confluent_kafka import Producer

from monitor.kafka.clients import ensure_topics
from monitor.paths import rules_path
from monitor.pipeline.classify import ResponseCodeTable
from monitor.pipeline.consumer import TransactionConsumer
from monitor.pipeline.processor import BatchProcessor
from monitor.pipeline.selection import AlertPolicy
from monitor.pipeline.vips import RegistryLoader
from monitor.pipeline.watermark import EventClock, PartitionProgress
from monitor.testing.fixtures import kafka_settings, wait_until
from tests.helpers import encode, event

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def times(*seconds: float) -> pl.Series:
    return pl.Series("t", [T0 + timedelta(seconds=s) for s in seconds], dtype=pl.Datetime("us", "UTC"))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_event_far_behind_its_own_partition_is_late_however_the_batches_split() -> None:
    """Lateness is judged against the partition's own earlier events: split or whole, the same events are late."""
    order = [0, 30, 12, 31, 25]  # 12 s is 18 s behind 30: late; 25 is 6 s behind 31: on time
    whole = EventClock(allowed_lateness_seconds=10)
    late_whole = whole.advance(times(*order)).to_list()
    split = EventClock(allowed_lateness_seconds=10)
    late_split = [flag for s in order for flag in split.advance(times(s)).to_list()]
    assert late_whole == late_split == [False, False, True, False, False]
    assert whole.late_events == split.late_events == 1


def test_the_watermark_is_the_slowest_partition_minus_the_lateness() -> None:
    """Partition 1 behind partition 0 holds the watermark; it never goes back."""
    clock = EventClock(allowed_lateness_seconds=10)
    assigned = PartitionProgress(frozenset({0, 1}))
    clock.advance(times(100, 200), [0, 0], assigned)
    assert clock.watermark is None  # partition 1 not read yet: it may hold anything
    clock.advance(times(50), [1], assigned)
    assert clock.watermark == at(40)
    late = clock.advance(times(45, 60), [1, 1], assigned)
    assert late.to_list() == [False, False] and clock.watermark == at(50)
    clock.advance(times(300), [0], PartitionProgress(frozenset({0})))  # partition 1 revoked
    assert clock.watermark == at(290)


def test_a_partition_read_to_its_end_counts_as_the_most_advanced() -> None:
    """Caught-up partitions hold nothing back; a new event of one, behind the watermark, is late."""
    clock = EventClock(allowed_lateness_seconds=10)
    clock.advance(times(100), [0], PartitionProgress(frozenset({0, 1, 2}), frozenset({1, 2})))
    assert clock.watermark == at(90)
    late = clock.advance(times(80, 95), [1, 1], PartitionProgress(frozenset({0, 1, 2}), frozenset({0, 1, 2})))
    assert late.to_list() == [True, False]


def test_a_stalled_partition_stops_holding_the_watermark() -> None:
    """A partition with unread messages and no progress for stalled_partition_seconds no longer freezes the others."""
    wall = FakeClock()
    clock = EventClock(allowed_lateness_seconds=10, stalled_partition_seconds=60, monotonic=wall)
    assigned = PartitionProgress(frozenset({0, 1}))
    clock.advance(times(10), [1], assigned)
    clock.advance(times(100), [0], assigned)
    assert clock.watermark == at(0)
    wall.now = 59.0
    clock.advance(times(200), [0], assigned)
    assert clock.watermark == at(0)
    wall.now = 61.0
    clock.advance(times(300), [0], assigned)
    assert clock.watermark == at(290)


def test_lateness_and_stall_bounds_are_checked() -> None:
    """A negative lateness or a non-positive stall time is refused."""
    with pytest.raises(ValueError, match="allowed_lateness_seconds"):
        EventClock(allowed_lateness_seconds=-1)
    with pytest.raises(ValueError, match="stalled_partition_seconds"):
        EventClock(stalled_partition_seconds=0)


def _processor(clock: EventClock) -> BatchProcessor:
    return BatchProcessor(codes=ResponseCodeTable.load(rules_path("response_codes.yaml")),
                          policy=AlertPolicy.load(rules_path("alerting.yaml")),
                          registry=RegistryLoader(None, None), clock=clock)


def test_late_events_are_counted_and_kept_from_the_observers_but_still_processed(tmp_path: Path) -> None:
    """A store-and-forward event far behind its partition reaches metrics and alerting, not health or incidents."""
    seen: list[list[str]] = []

    class Observer:
        def observe(self, frame: pl.DataFrame) -> None:
            seen.append(frame.get_column("event_id").to_list())

    processor = _processor(EventClock(allowed_lateness_seconds=10))
    processor.observers = (Observer(),)
    values = [encode(event(name, occurred_at=at(s).isoformat())) for name, s in
              (("a", 100), ("b", 110), ("stored", 20), ("c", 111))]
    result = processor.process(values, partitions=[0, 0, 0, 0])
    assert (result.events, result.late) == (4, 1)
    assert seen == [["a", "b", "c"]]


async def test_a_backlog_partition_holds_the_watermark_and_empty_ones_do_not(
        kafka_bootstrap: str, unique_name: str) -> None:
    """Through the real consumer: partition 1's backlog, read after partition 0's, is not late; the empty partition 2 holds nothing."""
    settings = kafka_settings(kafka_bootstrap, unique_name, batch_timeout_ms=100,
                              batch_max_records=10)
    await ensure_topics(settings, partitions=3)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for partition, count in ((0, 60), (1, 30)):
        for n in range(count):  # partition 1 covers the same minute as partition 0, more sparsely
            value = encode(event(f"p{partition}-{n}", occurred_at=at(n * 60 / count).isoformat(),
                                 terminal_id=f"ATM-{partition}"))
            producer.produce(settings.topic, value=value, partition=partition)
    assert producer.flush(10) == 0
    clock = EventClock(allowed_lateness_seconds=5)
    consumer = TransactionConsumer(settings, processor=_processor(clock),
                                   record_failures=lambda _f, _i: asyncio.sleep(0))
    await consumer.start()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await wait_until(lambda: consumer.events >= 90, what="90 events")
        await wait_until(lambda: clock.watermark == at(59) - timedelta(seconds=5), what="the watermark")
    finally:
        stop.set()
        await task
        await consumer.stop()
    assert consumer.batches >= 9 and clock.late_events == 0
