"""A live batch is topped up with what reached the broker while its buffer sat in the client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from monitor.kafka.clients import ensure_topics
from monitor.kafka.reader import PartitionReader
from monitor.testing.fixtures import kafka_settings, wait_until
from tests.helpers import produce_raw_batch

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def _send(producer: AIOKafkaProducer, topic: str, prefix: str, count: int) -> None:
    for n in range(count):
        await producer.send_and_wait(topic, f"{prefix}-{n}".encode(), partition=0)


@pytest.fixture
async def clients(kafka_bootstrap: str, unique_name: str
                  ) -> AsyncIterator[tuple[AIOKafkaProducer, AIOKafkaConsumer, str]]:
    """A producer and a consumer assigned the one partition of a fresh topic."""
    settings = kafka_settings(kafka_bootstrap, unique_name)
    await ensure_topics(settings, partitions=1, topics=[settings.topic])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await producer.start()
    await consumer.start()
    consumer.assign([TopicPartition(settings.topic, 0)])
    try:
        yield producer, consumer, settings.topic
    finally:
        await consumer.stop()
        await producer.stop()


async def _buffered(producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, topic: str) -> None:
    """Read 'a', let the client fetch and hold (some of) 'b', then put 'c' on the broker only."""
    reader = PartitionReader(consumer, timeout_ms=5_000, max_records=100, top_up_ms=0)
    await _send(producer, topic, "a", 3)
    first = await reader.read()
    assert next(r.value for records in first.values() for r in records) == b"a-0"
    while sum(len(records) for records in first.values()) < 3:  # the rest of 'a', if split
        more = await reader.read()
        first = {tp: [*first.get(tp, []), *records] for tp, records in more.items()}
    await _send(producer, topic, "b", 5)
    tp = TopicPartition(topic, 0)
    # The client fetched 'b' or its first records (its high watermark moved past 'a'), and
    # asks for nothing more until that is read.
    await wait_until(lambda: (consumer.highwater(tp) or 0) > 3, timeout=30,
                     what="'b' fetched into the buffer")
    await _send(producer, topic, "c", 5)


async def test_a_batch_below_the_bound_gains_what_reached_the_broker_meanwhile(
        clients: tuple[AIOKafkaProducer, AIOKafkaConsumer, str]) -> None:
    """The read returns the buffered 'b' records, then in order the rest and 'c' (the top-up)."""
    producer, consumer, topic = clients
    await _buffered(producer, consumer, topic)
    reader = PartitionReader(consumer, timeout_ms=5_000, max_records=100, top_up_ms=3_000)
    batch = await reader.read()
    values = [record.value for records in batch.values() for record in records]
    assert values == [f"b-{n}".encode() for n in range(5)] + [f"c-{n}".encode() for n in range(5)]


async def test_a_top_up_never_exceeds_the_bound(
        clients: tuple[AIOKafkaProducer, AIOKafkaConsumer, str]) -> None:
    """With a bound of 8, the read holds 'b' and three 'c' records; the next read the last two."""
    producer, consumer, topic = clients
    await _buffered(producer, consumer, topic)
    reader = PartitionReader(consumer, timeout_ms=5_000, max_records=8, top_up_ms=3_000)
    batch = await reader.read()
    values = [record.value for records in batch.values() for record in records]
    assert values == [f"b-{n}".encode() for n in range(5)] + [f"c-{n}".encode() for n in range(3)]
    rest = await reader.read()
    assert [record.value for records in rest.values() for record in records] == [b"c-3", b"c-4"]


@pytest.mark.parametrize("corrupt", ["crc", "snappy"])
async def test_a_top_up_meeting_an_unreadable_batch_loses_nothing_and_pauses_only_then(
        clients: tuple[AIOKafkaProducer, AIOKafkaConsumer, str], kafka_bootstrap: str,
        corrupt: str) -> None:
    """Each readable record before the bad batch comes once, in order; then the partition waits."""
    producer, consumer, topic = clients
    await _buffered(producer, consumer, topic)
    await produce_raw_batch(kafka_bootstrap, topic, 0, [b"bad-0", b"bad-1"], corrupt=corrupt)
    await _send(producer, topic, "d", 2)
    reader = PartitionReader(consumer, timeout_ms=200, max_records=100, top_up_ms=3_000)
    seen: list[bytes] = []

    async def read_until_held() -> None:
        while not reader.unreadable or len(seen) < 10:
            batch = await reader.read()
            seen.extend(record.value for records in batch.values() for record in records)

    await asyncio.wait_for(read_until_held(), timeout=60)
    assert seen == [f"b-{n}".encode() for n in range(5)] + [f"c-{n}".encode() for n in range(5)]
    assert list(reader.unreadable) == [TopicPartition(topic, 0)]
