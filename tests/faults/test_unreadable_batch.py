"""A record batch the client cannot read holds only its partition, is reported within a minute, and can be skipped."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from monitor.alerts.store import AlertStore
from monitor.kafka.batches import fetch_batches
from monitor.kafka.clients import ensure_topics
from monitor.metrics import PipelineMetrics
from monitor.pipeline.consumer import TransactionConsumer
from monitor.testing.fixtures import kafka_settings, wait_until
from tests.faults.support import processor, running, sample
from tests.helpers import encode, event, produce_raw_batch, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

#: Messages before the bad batch, in it and after it, per partition (p2 has no bad batch).
BEFORE = {0: 3, 1: 2, 2: 5}
IN_BAD_BATCH = 3
AFTER = {0: 4, 1: 4, 2: 0}


async def _send(producer: AIOKafkaProducer, topic: str, partition: int, prefix: str, count: int) -> None:
    for n in range(count):
        await producer.send_and_wait(topic, encode(event(f"{prefix}-{n}")), partition=partition,
                                     key=b"ATM00042")


async def test_an_unreadable_batch_holds_its_partition_is_reported_and_is_skipped_on_request(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    """Bad CRC on p0 and undecodable snappy on p1: other events flow, metrics name both within a minute; the skip setting gets past them."""
    settings = kafka_settings(kafka_bootstrap, unique_name, batch_timeout_ms=100,
                              session_timeout_ms=6000, heartbeat_interval_ms=1000)
    topic = settings.topic
    await ensure_topics(settings, partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for partition, corrupt in ((0, "crc"), (1, "snappy"), (2, None)):
            await _send(producer, topic, partition, f"before-p{partition}", BEFORE[partition])
            if corrupt is not None:
                await produce_raw_batch(kafka_bootstrap, topic, partition, [
                    encode(event(f"bad-p{partition}-{n}")) for n in range(IN_BAD_BATCH)],
                    corrupt=corrupt)
            await _send(producer, topic, partition, f"after-p{partition}", AFTER[partition])
    finally:
        await producer.stop()
    for partition in (0, 1):  # really on the broker, really unreadable
        batches = await fetch_batches({"bootstrap_servers": kafka_bootstrap},
                                      TopicPartition(topic, partition), BEFORE[partition])
        assert batches[0].base_offset == BEFORE[partition] and not batches[0].readable

    # 1. Default settings: the bad batches hold p0 and p1, everything before them and p2 flows.
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    started = time.monotonic()
    with AlertStore(tmp_path / "alerts.db") as store:
        consumer = TransactionConsumer(
            settings, processor=processor(tmp_path, metrics), metrics=metrics,
            record_failures=lambda f, _i: asyncio.to_thread(store.record, f))
        async with running(consumer):
            await wait_until(lambda: all(
                sample(registry, "cardmon_partition_unreadable", topic=topic, partition=p) == 1
                for p in ("0", "1")), timeout=60, what="both partitions reported unreadable")
            reported_after = time.monotonic() - started
            await wait_until(lambda: consumer.events == sum(BEFORE.values()), timeout=30,
                             what="every readable event before the bad batches")
            await asyncio.sleep(3)  # held, not skipped: nothing of the bad batches or after them
            assert consumer.events == sum(BEFORE.values())
            assert sorted(tp.partition for tp in consumer.unreadable) == [0, 1]
            assert "CorruptRecordException" in consumer.unreadable[TopicPartition(topic, 0)]
    assert reported_after < 60
    for partition in ("0", "1"):
        assert sample(registry, "cardmon_partition_read_errors_total", topic=topic,
                      partition=partition) >= 1
    assert sample(registry, "cardmon_partition_read_errors_total", topic=topic, partition="2") == 0
    assert sample(registry, "cardmon_batches_skipped_total", topic=topic, partition="0") == 0

    # 2. The operator's way out: restart with kafka.skip_unreadable_after_seconds.
    skipping = settings.model_copy(update={"skip_unreadable_after_seconds": 0.0})
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    with AlertStore(tmp_path / "alerts.db") as store:
        consumer = TransactionConsumer(
            skipping, processor=processor(tmp_path, metrics), metrics=metrics,
            record_failures=lambda f, _i: asyncio.to_thread(store.record, f))
        async with running(consumer):
            await wait_until(lambda: consumer.events >= sum(AFTER.values()), timeout=60,
                             what="the events after the skipped batches")
            await asyncio.sleep(1)
            assert consumer.events == sum(AFTER.values()), "only what follows the bad batches"
            assert consumer.unreadable == {}
    for partition in ("0", "1"):
        assert sample(registry, "cardmon_batches_skipped_total", topic=topic, partition=partition) == 1
        assert sample(registry, "cardmon_partition_unreadable", topic=topic, partition=partition) == 0
    dead = await read_topic(kafka_bootstrap, settings.dead_letter_topic, expected=2)
    markers = sorted((dict(r.headers) for r in dead), key=lambda h: h["cardmon-source-partition"])
    assert [(h["cardmon-reason"], h["cardmon-source-partition"], h["cardmon-source-offset"],
             h["cardmon-source-last-offset"]) for h in markers] == [
        (b"unreadable_batch", b"0", b"3", b"5"), (b"unreadable_batch", b"1", b"2", b"4")]
    assert all(r.value == b"" for r in dead), "an unreadable batch's bytes are never copied"


async def test_records_drained_before_the_bad_batch_raised_are_not_lost(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    """The bad batch on the last partition: getmany drains p0 and p1 before it raises; those 2 x 6 records are still all processed."""
    settings = kafka_settings(kafka_bootstrap, unique_name, batch_timeout_ms=100)
    await ensure_topics(settings, partitions=3)
    await produce_raw_batch(kafka_bootstrap, settings.topic, 2, [encode(event("bad-0"))], corrupt="crc")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for partition in (0, 1):
            await _send(producer, settings.topic, partition, f"p{partition}", 6)
    finally:
        await producer.stop()
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    with AlertStore(tmp_path / "alerts.db") as store:
        consumer = TransactionConsumer(
            settings, processor=processor(tmp_path, metrics), metrics=metrics,
            record_failures=lambda f, _i: asyncio.to_thread(store.record, f))
        async with running(consumer):
            await wait_until(lambda: consumer.events >= 12 and bool(consumer.unreadable), timeout=60,
                             what="both good partitions processed, the bad one held")
            await asyncio.sleep(1)
            assert [tp.partition for tp in consumer.unreadable] == [2]
    assert consumer.events == 12
