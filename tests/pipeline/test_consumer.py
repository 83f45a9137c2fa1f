"""The consumer against a real broker: bad input is dead-lettered, good input is all processed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from monitor.alerts.store import AlertStore
from monitor.kafka.clients import ensure_topics
from monitor.metrics import PipelineMetrics
from monitor.paths import rules_path
from monitor.pipeline.classify import ResponseCodeTable
from monitor.pipeline.consumer import TransactionConsumer
from monitor.pipeline.processor import BatchProcessor
from monitor.pipeline.selection import AlertPolicy
from monitor.pipeline.vips import RegistryLoader
from monitor.testing.fixtures import kafka_settings, wait_until
from tests.helpers import encode, event, read_topic, write_registry

PAN = "4111111111111111"

GOOD = [
    encode(event("ok-1")),
    encode(event("vip-fail-1", customer_id="C-VIP", response_code="91")),
    encode(event("ok-2", channel="POS", txn_type="purchase", terminal_id="POS00007", entry_mode="chip")),
    encode(event("timeout-1", status="timeout", response_code=None) | {"response_code": None}),
]
BAD = {
    "invalid_json": encode(event("trunc"))[:40],
    "invalid_field": encode(event("wrong-type", amount_minor="12.50")),
    "missing_field": encode({k: v for k, v in event("no-terminal").items() if k != "terminal_id"}),
    "naive_timestamp": encode(event("naive", occurred_at="2026-03-02T10:15:00")),
    "invalid_utf8": b'{"event_id": "\xff\xfe"}',
    "not_an_object": b"[1, 2, 3]",
    "unknown_currency": encode(event("cur", currency="ZZZ")),
    "pan_in_card_ref": encode(event("panref", card_ref=PAN)),
}
NEGATIVE = encode(event("negative", amount_minor=-100))
NON_FINITE = encode(event("huge", amount_minor=0)).replace(b'"amount_minor":0', b'"amount_minor":1e999')
RAW_PAN = encode(event("raw-pan", pan=PAN, customer_id="C-VIP", response_code="05"))


def _processor(tmp_path: Path, metrics: PipelineMetrics) -> BatchProcessor:
    customers, managers = write_registry(
        tmp_path / "registry",
        "customer_id,name,tier,manager_id,card_refs\nC-VIP,Hélène Martin,private,M-1,",
        "manager_id,name,email,phone,webhook_url,backup_manager_id,timezone\n"
        "M-1,Paul Durand,paul@bank.test,,,,Europe/Paris",
    )
    loader = RegistryLoader(customers, managers)
    loader.load()
    return BatchProcessor(codes=ResponseCodeTable.load(rules_path("response_codes.yaml")),
                          policy=AlertPolicy.load(rules_path("alerting.yaml")),
                          registry=loader, metrics=metrics)


async def test_bad_messages_are_dead_lettered_and_good_ones_processed(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    """Every bad message lands in the DLQ with its reason; every valid one around it is processed."""
    settings = kafka_settings(kafka_bootstrap, unique_name, batch_timeout_ms=100)
    await ensure_topics(settings, partitions=2)
    # A foreign producer (librdkafka), as a bank's switch would use.
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    stream = [GOOD[0], *BAD.values(), GOOD[1], NEGATIVE, GOOD[2], NON_FINITE, RAW_PAN, GOOD[3]]
    for position, value in enumerate(stream):
        producer.produce(settings.topic, value=value, key=f"T{position % 3}".encode())
    assert producer.flush(10) == 0

    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    store = AlertStore(tmp_path / "alerts.db")
    consumer = TransactionConsumer(
        settings, processor=_processor(tmp_path, metrics), metrics=metrics,
        record_failures=lambda failures, _incidents: asyncio.to_thread(store.record, failures),
    )
    await consumer.start()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await wait_until(lambda: (registry.get_sample_value("cardmon_events_consumed_total") or 0)
                         >= len(stream), what="all messages consumed")
    finally:
        stop.set()
        await task
        await consumer.stop()

    # Valid events: 4 good + the raw-PAN one (masked, processed).
    assert consumer.events == 5
    transactions = sum(
        registry.get_sample_value("cardmon_transactions_total", {"channel": c, "outcome": o}) or 0
        for c in ("ATM", "POS", "ECOM")
        for o in ("approved", "technical", "terminal", "card", "customer", "fraud", "unknown"))
    assert transactions == 5

    dead = await read_topic(kafka_bootstrap, settings.dead_letter_topic, expected=len(BAD) + 3)
    reasons = sorted(dict(record.headers)["cardmon-reason"].decode() for record in dead)
    assert reasons == sorted([*BAD, "invalid_field", "invalid_field", "raw_pan"])
    for record in dead:
        headers = dict(record.headers)
        assert headers["cardmon-source-topic"].decode() == settings.topic
        assert int(headers["cardmon-source-offset"]) >= 0
        assert PAN.encode() not in record.value, "a raw PAN reached the dead-letter topic"
    assert registry.get_sample_value("cardmon_dead_letters_total", {"reason": "raw_pan"}) == 1
    assert registry.get_sample_value("cardmon_events_rejected_total", {"reason": "naive_timestamp"}) == 1

    # Both VIP failures (91 technical and the raw-PAN 05) are in the durable store, masked.
    alerts = store.list_alerts()
    events = [e for alert in alerts for e in store.alert_events(alert.alert_id)]
    assert sorted(e.event_id for e in events) == ["raw-pan", "vip-fail-1"]
    assert [e.pan_masked for e in events if e.event_id == "raw-pan"] == ["411111******1111"]
    assert PAN.encode() not in (tmp_path / "alerts.db").read_bytes()
    store.close()


async def test_offsets_are_committed_after_the_batch(kafka_bootstrap: str, unique_name: str,
                                                     tmp_path: Path) -> None:
    """A restarted consumer in the same group resumes after what was processed, not from the start."""
    settings = kafka_settings(kafka_bootstrap, unique_name, batch_timeout_ms=100)
    # A short session timeout: the broker must notice the stopped member quickly.
    settings = settings.model_copy(update={"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000})
    await ensure_topics(settings, partitions=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for n in range(30):
        producer.produce(settings.topic, value=encode(event(f"e-{n}")), key=b"ATM00042")
    assert producer.flush(10) == 0

    async def consume(expected: int) -> int:
        registry = CollectorRegistry()
        metrics = PipelineMetrics(registry)
        store = AlertStore(tmp_path / "alerts.db")
        consumer = TransactionConsumer(settings, processor=_processor(tmp_path, metrics),
                                       metrics=metrics,
                                       record_failures=lambda f, _i: asyncio.to_thread(store.record, f))
        await consumer.start()
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        try:
            await wait_until(lambda: consumer.events >= expected, what=f"{expected} events")
            await asyncio.sleep(1.0)  # anything beyond `expected` would show up here
        finally:
            stop.set()
            await task
            await consumer.stop()
            store.close()
        return consumer.events

    assert await consume(30) == 30
    for n in range(30, 35):
        producer.produce(settings.topic, value=encode(event(f"e-{n}")), key=b"ATM00042")
    assert producer.flush(10) == 0
    assert await consume(5) == 5, "the restarted member re-read committed messages"


@pytest.mark.parametrize("value", [NEGATIVE, NON_FINITE])
def test_amounts_that_are_not_minor_units_are_rejected(value: bytes, tmp_path: Path) -> None:
    """A negative or non-finite amount is rejected as an invalid field, not processed."""
    metrics = PipelineMetrics(CollectorRegistry())
    result = _processor(tmp_path, metrics).process([value, GOOD[0]])
    assert [r.reason for r in result.rejections] == ["invalid_field"]
    assert result.events == 1


async def _run_until_consumed(consumer: TransactionConsumer, registry: CollectorRegistry,
                              count: int) -> None:
    await consumer.start()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await wait_until(lambda: (registry.get_sample_value("cardmon_events_consumed_total") or 0)
                         >= count, what=f"{count} messages consumed")
    finally:
        stop.set()
        await task
        await consumer.stop()


async def test_an_oversized_bad_message_is_dead_lettered_cut_with_its_size(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    """A 3 MB bad message reaches the DLQ cut to 512 KiB with its size in a header; neighbours are processed."""
    settings = kafka_settings(kafka_bootstrap, unique_name, batch_timeout_ms=100)
    await ensure_topics(settings, partitions=1)
    huge = encode(event("huge-city", city="x" * 3_000_000))
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 10_000_000})
    for value in (GOOD[0], huge, GOOD[2]):
        producer.produce(settings.topic, value=value, key=b"ATM00042")
    assert producer.flush(10) == 0
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    with AlertStore(tmp_path / "alerts.db") as store:
        consumer = TransactionConsumer(settings, processor=_processor(tmp_path, metrics), metrics=metrics,
                                       record_failures=lambda f, _i: asyncio.to_thread(store.record, f))
        await _run_until_consumed(consumer, registry, 3)
    assert consumer.events == 2
    (dead,) = await read_topic(kafka_bootstrap, settings.dead_letter_topic, expected=1)
    headers = dict(dead.headers)
    assert headers["cardmon-reason"] == b"invalid_field"
    assert int(headers["cardmon-truncated-from-bytes"]) == len(huge)
    assert len(dead.value) == 512 * 1024 and huge.startswith(dead.value)


class _FlakyDeadLetters(TransactionConsumer):
    """A consumer whose first dead-letter write fails as a broker outage would."""

    failures_left = 1

    async def _dead_letter(self, records, rejections):  # type: ignore[no-untyped-def]
        if self.failures_left:
            self.failures_left -= 1
            raise KafkaConnectionError("broker went away")
        await super()._dead_letter(records, rejections)


async def test_a_failed_dead_letter_write_rereads_the_batch_and_loses_nothing(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    """When the DLQ write fails, the batch is read again: every bad message is dead-lettered, none lost."""
    settings = kafka_settings(kafka_bootstrap, unique_name, batch_timeout_ms=100)
    await ensure_topics(settings, partitions=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    stream = [GOOD[0], BAD["invalid_json"], GOOD[1], BAD["naive_timestamp"], GOOD[2]]
    for value in stream:
        producer.produce(settings.topic, value=value, key=b"ATM00042")
    assert producer.flush(10) == 0
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    with AlertStore(tmp_path / "alerts.db") as store:
        consumer = _FlakyDeadLetters(settings, processor=_processor(tmp_path, metrics), metrics=metrics,
                                     record_failures=lambda f, _i: asyncio.to_thread(store.record, f))
        await _run_until_consumed(consumer, registry, len(stream))
        alerts = store.list_alerts()
    assert consumer.failures_left == 0, "the outage was never simulated"
    dead = await read_topic(kafka_bootstrap, settings.dead_letter_topic, expected=2, timeout=5)
    assert sorted(dict(r.headers)["cardmon-reason"] for r in dead) == [b"invalid_json", b"naive_timestamp"]
    assert [a.event_count for a in alerts] == [1], "the re-read batch must not alert twice"


class _SmallRequests(TransactionConsumer):
    """A consumer whose dead-letter producer takes requests of 64 KiB at most (a stricter broker)."""

    async def start(self) -> None:
        await super().start()
        assert self._producer is not None
        await self._producer.stop()
        self._producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap_servers,
                                          max_request_size=64 * 1024)
        await self._producer.start()


async def test_a_dead_letter_refused_for_its_size_is_replaced_by_its_minimal_copy(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    """MessageSizeTooLargeError is permanent: the reason and source offset go instead, once, and the batch goes on."""
    settings = kafka_settings(kafka_bootstrap, unique_name, batch_timeout_ms=100)
    await ensure_topics(settings, partitions=1)
    big = encode(event("big-city", city="y" * 300_000, amount_minor="bad"))
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for value in (GOOD[0], big, GOOD[1]):
        producer.produce(settings.topic, value=value, key=b"ATM00042")
    assert producer.flush(10) == 0
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    with AlertStore(tmp_path / "alerts.db") as store:
        consumer = _SmallRequests(settings, processor=_processor(tmp_path, metrics), metrics=metrics,
                                  record_failures=lambda f, _i: asyncio.to_thread(store.record, f))
        await _run_until_consumed(consumer, registry, 3)
    assert consumer.events == 2
    (dead,) = await read_topic(kafka_bootstrap, settings.dead_letter_topic, expected=1)
    assert dead.key is None and dead.value == b""
    assert dict(dead.headers) == {
        "cardmon-reason": b"invalid_field", "cardmon-source-topic": settings.topic.encode(),
        "cardmon-source-partition": b"0", "cardmon-source-offset": b"1",
        "cardmon-dead-letter-error": b"MessageSizeTooLargeError"}
    assert registry.get_sample_value("cardmon_dead_letters_total", {"reason": "invalid_field"}) == 1
    assert registry.get_sample_value("cardmon_consumer_retries_total",
                                     {"topic": settings.topic, "step": "dead_letter"}) == 0
