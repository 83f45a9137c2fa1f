"""The consumer's overlap: processing in a worker thread under its lock, the next batch read meanwhile."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaConnectionError
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from monitor.kafka.clients import ensure_topics
from monitor.metrics import PipelineMetrics
from monitor.pipeline.consumer import TransactionConsumer
from monitor.pipeline.processor import BatchProcessor, ProcessedBatch
from monitor.testing.fixtures import kafka_settings, wait_until
from tests.helpers import encode, event
from tests.pipeline.test_consumer import _processor

EVENTS = 40


class _Watched(TransactionConsumer):
    """Records what each batch saw: event IDs in order, the thread, the lock; fails one commit."""

    def __init__(self, *args: Any, fail_commits: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[str] = []  # event IDs in the order they were processed
        self.on_loop_thread = 0  # batches processed on the event loop's thread
        self.unlocked = 0  # batches processed without the processing lock held
        self.fail_commits = fail_commits
        self.loop_thread = threading.get_ident()

    def _process(self, values: list[bytes | None], partitions: list[int], progress: Any,
                 *decoded: Any) -> ProcessedBatch:
        inner = self.processor.process

        def watched(batch: list[bytes | None], **options: Any) -> ProcessedBatch:
            self.on_loop_thread += threading.get_ident() == self.loop_thread
            self.unlocked += not self.processing_lock.locked()
            self.seen.extend(json.loads(value)["event_id"] for value in batch if value is not None)
            return inner(batch, **options)

        self.processor = _Proxy(self.processor, watched)  # type: ignore[assignment]
        try:
            return super()._process(values, partitions, progress, *decoded)
        finally:
            self.processor = self.processor._inner  # type: ignore[attr-defined]

    async def _commit(self, batch: Any) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise KafkaConnectionError("broker went away")
        await super()._commit(batch)


class _Proxy:
    def __init__(self, inner: BatchProcessor, process: Any) -> None:
        self._inner = inner
        self.process = process


async def _consume(consumer: _Watched, registry: CollectorRegistry, count: int) -> None:
    await consumer.start()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await wait_until(lambda: (registry.get_sample_value("cardmon_events_consumed_total") or 0)
                         >= count and consumer.fail_commits == 0, what=f"{count} messages consumed")
    finally:
        stop.set()
        await task
        await consumer.stop()


async def _topic_of(kafka_bootstrap: str, unique_name: str) -> Any:
    # Batches of 7: several batches, so one is always read ahead while another is handled.
    settings = kafka_settings(kafka_bootstrap, unique_name, batch_timeout_ms=100).model_copy(
        update={"batch_max_records": 7})
    await ensure_topics(settings, partitions=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for n in range(EVENTS):
        producer.produce(settings.topic, value=encode(event(f"e-{n:02d}")), key=b"ATM00042")
    assert producer.flush(10) == 0
    return settings


async def _no_failures(_failures: Any, _incidents: Any) -> None:
    return None


async def test_batches_are_processed_in_a_worker_thread_under_the_lock_in_order(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    """Every batch is processed off the event loop's thread, holding the processing lock, each event once and in order."""
    settings = await _topic_of(kafka_bootstrap, unique_name)
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    consumer = _Watched(settings, processor=_processor(tmp_path, metrics), metrics=metrics,
                        record_failures=_no_failures)
    await _consume(consumer, registry, EVENTS)
    assert consumer.seen == [f"e-{n:02d}" for n in range(EVENTS)]
    assert consumer.on_loop_thread == 0 and consumer.unlocked == 0


async def test_a_failed_commit_rewinds_the_batch_read_ahead_too(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    """A batch whose commit fails is read again from its first event, and so is the batch read ahead: none skipped."""
    settings = await _topic_of(kafka_bootstrap, unique_name)
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    consumer = _Watched(settings, processor=_processor(tmp_path, metrics), metrics=metrics,
                        record_failures=_no_failures, fail_commits=1)
    await _consume(consumer, registry, EVENTS)
    expected = [f"e-{n:02d}" for n in range(EVENTS)]
    first = consumer.seen[:7]
    assert first == expected[:7], "the first batch"
    # The first batch's commit failed: it is processed again, then everything after it, in order.
    assert consumer.seen[7:] == expected, "re-read from the failed batch's first event, nothing skipped"
