"""The producer against a real Kafka-compatible broker (embedded Tansu)."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from aiokafka.errors import KafkaError

from monitor.pipeline.decoder import decode_batch
from monitor.testing.broker import EmbeddedBroker, free_port
from simulators.producer import produce
from simulators.sources.tabformer import tabformer_events

pytestmark = pytest.mark.integration


def _event(index: int, at: datetime, terminal_id: str = "ATM00001") -> dict:
    return {
        "event_id": f"t-{index}", "occurred_at": at.isoformat(), "channel": "ATM",
        "terminal_id": terminal_id, "txn_type": "withdrawal", "amount_minor": 2000,
        "currency": "EUR", "card_ref": "tok-1", "response_code": "00",
    }


async def test_tabformer_slice_round_trips(kafka_bootstrap: str, unique_name: str,
                                           tabformer_csv: Path, topic_reader) -> None:
    """A TabFormer slice sent to Kafka comes back complete, keyed by terminal ID, and decodes."""
    topic = f"card.transactions.{unique_name}"
    events = list(tabformer_events(tabformer_csv, limit=2_000))
    sent = await produce(events, bootstrap_servers=kafka_bootstrap, topic=topic)
    assert sent == 2_000
    records = await topic_reader(kafka_bootstrap, topic, sent)
    assert len(records) == 2_000
    by_id = {msgspec.json.decode(r.value)["event_id"]: r for r in records}
    assert len(by_id) == 2_000
    for event in events:
        record = by_id[event["event_id"]]
        assert record.key == event["terminal_id"].encode()
    decoded = decode_batch([r.value for r in records])
    assert decoded.rejections == []
    assert len(decoded.events) == 2_000


async def test_speed_paces_by_event_gaps(kafka_bootstrap: str, unique_name: str) -> None:
    """Three events one second apart at speed 10 take at least 0.2 s of wall time to send."""
    start = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    events = [_event(i, start + timedelta(seconds=i)) for i in range(3)]
    began = time.monotonic()
    sent = await produce(events, bootstrap_servers=kafka_bootstrap,
                         topic=f"pacing.{unique_name}", speed=10)
    assert sent == 3
    assert time.monotonic() - began >= 0.2


async def test_rebase_to_now_keeps_gaps(kafka_bootstrap: str, unique_name: str, topic_reader) -> None:
    """Rebasing stamps the first event with the current time and keeps the gaps between events."""
    start = datetime(2002, 9, 1, 6, 21, tzinfo=UTC)
    events = [_event(i, start + timedelta(seconds=90 * i)) for i in range(3)]
    topic = f"rebase.{unique_name}"
    before = datetime.now(UTC)
    await produce(events, bootstrap_servers=kafka_bootstrap, topic=topic, rebase_to_now=True)
    after = datetime.now(UTC)
    records = await topic_reader(kafka_bootstrap, topic, 3)
    times = sorted(
        datetime.fromisoformat(msgspec.json.decode(r.value)["occurred_at"]) for r in records
    )
    assert before <= times[0] <= after
    assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(seconds=90)] * 2


async def test_async_iterable_is_accepted(kafka_bootstrap: str, unique_name: str,
                                          topic_reader) -> None:
    """Events from an async generator are all sent and counted."""
    start = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)

    async def source():
        for i in range(5):
            yield _event(i, start, terminal_id=f"ATM0000{i}")

    topic = f"async.{unique_name}"
    assert await produce(source(), bootstrap_servers=kafka_bootstrap, topic=topic) == 5
    records = await topic_reader(kafka_bootstrap, topic, 5)
    assert sorted(r.key for r in records) == [f"ATM0000{i}".encode() for i in range(5)]


async def test_rejects_non_positive_speed(kafka_bootstrap: str) -> None:
    """A speed of zero is refused before anything is sent."""
    with pytest.raises(ValueError, match="speed"):
        await produce([], bootstrap_servers=kafka_bootstrap, topic="unused", speed=0)


async def test_a_broker_that_comes_up_late_is_waited_for(unique_name: str, topic_reader) -> None:
    """The broker starts 3 s after the simulator: the events are sent, not refused at once."""
    broker = EmbeddedBroker(port=free_port())
    asyncio.get_running_loop().call_later(3.0, broker.start)
    try:
        now = datetime.now(UTC)
        sent = await produce([_event(i, now) for i in range(5)],
                             bootstrap_servers=broker.bootstrap_servers, topic=f"late-{unique_name}")
        assert sent == 5
        records = await topic_reader(broker.bootstrap_servers, f"late-{unique_name}", 5)
        assert len(records) == 5
    finally:
        broker.stop()


async def test_a_broker_that_never_comes_fails_after_the_retry_bound() -> None:
    """Nothing listening: the Kafka error comes out after retry_seconds, not at once and not never."""
    started = time.monotonic()
    with pytest.raises(KafkaError):
        await produce([_event(0, datetime.now(UTC))], bootstrap_servers=f"127.0.0.1:{free_port()}",
                      topic="nowhere", retry_seconds=2.0)
    assert 2.0 <= time.monotonic() - started < 10.0
