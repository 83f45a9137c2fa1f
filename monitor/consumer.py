"""The Kafka side: consume micro-batches, dead-letter bad messages, commit safely.

Commit protocol, per micro-batch (``AIOKafkaConsumer.getmany``), in this order:

1. process the whole batch (:class:`monitor.pipeline.BatchProcessor`): decode,
   classify, VIP lookup, metrics, alert policy;
2. write the batch's VIP failures and incident changes (storm control) to the alert
   store in one durable transaction (retried with backoff until it succeeds: the
   partition waits, nothing is lost);
3. send each rejected message to the dead-letter topic, PAN-scrubbed (and cut to
   512 KiB, with a ``cardmon-truncated-from-bytes`` header, when larger), with its
   reason in headers, and wait until the broker has acknowledged every one;
4. commit, per partition, the offset after the batch's last message;
5. update the consumer-lag gauge from the partitions' high watermarks.

A crash anywhere before step 4 redelivers the batch; a Kafka error in steps 3–4
seeks the batch's partitions back to its first messages, so it is read again; steps 2 and 3 are
idempotent for alerts (event IDs and content-derived alert IDs), so a replay
never notifies a manager twice. Dead letters and metrics are at-least-once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Protocol

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError

from monitor.alerts.model import VipFailure
from monitor.config import KafkaSettings
from monitor.decoder import Rejection, scrub_pans
from monitor.incidents import IncidentChange
from monitor.pipeline import BatchProcessor, ProcessedBatch
from monitor.privacy import dead_letter_copy
from monitor.watermark import PartitionProgress

__all__ = ["ConsumerMetrics", "TransactionConsumer", "ensure_topics", "kafka_client_options"]

log = logging.getLogger(__name__)

#: Longest wait between two tries to write alerts when the store is failing (seconds).
_STORE_RETRY_MAX_SECONDS: Final = 30.0

#: Largest dead-letter value sent whole; aiokafka's default max_request_size is 1 MiB.
_DEAD_LETTER_MAX_BYTES: Final = 512 * 1024

#: Stores a batch's VIP failures and its incident changes, durably, before the commit.
RecordFailures = Callable[[Sequence[VipFailure], Sequence[IncidentChange]], Awaitable[Any]]


class ConsumerMetrics(Protocol):
    """Pipeline metrics the consumer reports (see :mod:`monitor.metrics`)."""

    def observe_rejections(self, reasons: dict[str, int]) -> None: ...
    def observe_dead_letters(self, reasons: dict[str, int]) -> None: ...
    def observe_batch_duration(self, seconds: float, size: int) -> None: ...
    def set_lag(self, topic: str, partition: int, lag: int) -> None: ...
    def forget_lag(self, topic: str, partition: int) -> None: ...


class _LagCleanup(ConsumerRebalanceListener):  # type: ignore[misc]
    """Drops the lag series of partitions this member no longer owns after a rebalance."""

    def __init__(self, metrics: ConsumerMetrics | None) -> None:
        self._metrics = metrics

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if self._metrics is not None:
            for tp in revoked:
                self._metrics.forget_lag(tp.topic, tp.partition)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("partitions assigned: %s", sorted((tp.topic, tp.partition) for tp in assigned))


def kafka_client_options(settings: KafkaSettings) -> dict[str, Any]:
    """aiokafka keyword arguments shared by the consumer, producer and admin client."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.sasl_mechanism:
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        if settings.sasl_password is not None:
            options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


async def ensure_topics(settings: KafkaSettings, *, partitions: int = 3,
                        topics: Sequence[str] | None = None) -> None:
    """Create the event and dead-letter topics if they do not exist yet.

    Raises:
        aiokafka.errors.KafkaError: the broker cannot be reached.
    """
    names = list(topics) if topics is not None else [settings.topic, settings.dead_letter_topic]
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, partitions, 1) for name in names if name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


class TransactionConsumer:
    """Consumes ``card.transactions`` in micro-batches for one consumer group member.

    Args:
        settings: Kafka settings (topic, group, batch bounds).
        processor: turns a batch into rejections and VIP failures.
        record_failures: durably stores a batch's VIP failures and incident changes
            (awaited before commit).
        metrics: pipeline metrics, or ``None``.
    """

    def __init__(self, settings: KafkaSettings, *, processor: BatchProcessor,
                 record_failures: RecordFailures, metrics: ConsumerMetrics | None = None) -> None:
        self.settings = settings
        self.processor = processor
        self._record_failures = record_failures
        self.metrics = metrics
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self.batches = 0
        self.events = 0

    async def start(self) -> None:
        """Connect and join the consumer group."""
        options = kafka_client_options(self.settings)
        self._producer = AIOKafkaProducer(acks="all", linger_ms=5, **options)
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            group_id=self.settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self.settings.auto_offset_reset,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=self.settings.heartbeat_interval_ms,
            **options,
        )
        await self._consumer.start()
        self._consumer.subscribe([self.settings.topic], listener=_LagCleanup(self.metrics))

    async def stop(self) -> None:
        """Leave the group and close both clients (uncommitted work is redelivered)."""
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        if consumer is not None:
            await consumer.stop()
        if producer is not None:
            await producer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set. Never returns because of a bad message."""
        assert self._consumer is not None, "call start() first"
        backoff = 0.5
        while not stop.is_set():
            try:
                batch = await self._consumer.getmany(
                    timeout_ms=self.settings.batch_timeout_ms,
                    max_records=self.settings.batch_max_records,
                )
                if batch:
                    try:
                        await self.handle(batch)
                    except KafkaError:
                        # Nothing of this batch was committed: read it again, lose nothing.
                        self._rewind(batch)
                        raise
                backoff = 0.5
            except KafkaError as error:
                log.warning("Kafka error, retrying in %.1f s: %s", backoff, error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def _rewind(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Seek every partition of ``batch`` back to its first message (the batch is redelivered)."""
        assert self._consumer is not None
        for tp, messages in batch.items():
            if messages and tp in self._consumer.assignment():
                self._consumer.seek(tp, messages[0].offset)

    async def handle(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> ProcessedBatch:
        """Process, store, dead-letter and commit one ``getmany`` result (steps 1–5)."""
        started = time.perf_counter()
        records = [record for messages in batch.values() for record in messages]
        values = [record.value for record in records]
        result = self.processor.process(values, partitions=[record.partition for record in records],
                                        progress=await self._progress(batch))
        if result.failures or result.incidents:
            await self._store(result.failures, result.incidents)
        if result.rejections:
            await self._dead_letter(records, result.rejections)
        await self._commit(batch)
        self.batches += 1
        self.events += result.events
        if self.metrics is not None:
            self.metrics.observe_batch_duration(time.perf_counter() - started, len(records))
            self._report_lag(batch)
        return result

    async def _progress(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
                        ) -> PartitionProgress:
        """The assigned partitions and those read to their end (see :mod:`monitor.watermark`)."""
        assert self._consumer is not None
        assigned, caught_up = set(), set()
        for tp in self._consumer.assignment():
            assigned.add(tp.partition)
            highwater = self._consumer.highwater(tp)
            if highwater is None:  # not fetched yet: it may hold anything
                continue
            messages = batch.get(tp)
            try:
                position = messages[-1].offset + 1 if messages else await self._consumer.position(tp)
            except KafkaError:  # IllegalStateError: revoked meanwhile
                continue
            if position >= highwater:
                caught_up.add(tp.partition)
        return PartitionProgress(frozenset(assigned), frozenset(caught_up))

    async def _store(self, failures: list[VipFailure], incidents: list[IncidentChange]) -> None:
        delay = 0.5
        while True:
            try:
                await self._record_failures(failures, incidents)
                return
            except Exception:  # the store must succeed before the commit; keep trying
                log.exception("alert store write failed; retrying in %.1f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _STORE_RETRY_MAX_SECONDS)

    async def _dead_letter(self, records: list[ConsumerRecord[bytes, bytes]],
                           rejections: list[Rejection]) -> None:
        assert self._producer is not None
        by_index: dict[int, list[Rejection]] = {}
        for rejection in rejections:
            by_index.setdefault(rejection.index, []).append(rejection)
        reasons: dict[str, int] = {}
        sends = []
        for index, found in by_index.items():
            record = records[index]
            reason = found[0].reason
            reasons[reason] = reasons.get(reason, 0) + 1
            headers = [
                ("cardmon-reason", reason.encode()),
                ("cardmon-detail", "; ".join(r.detail for r in found).encode()),
                ("cardmon-source-topic", record.topic.encode()),
                ("cardmon-source-partition", str(record.partition).encode()),
                ("cardmon-source-offset", str(record.offset).encode()),
            ]
            value = dead_letter_copy(record.value) if record.value is not None else b""
            key = scrub_pans(record.key) if record.key is not None else None
            if len(value) > _DEAD_LETTER_MAX_BYTES:
                # Too large for one produce request: keep the head, say how much there was.
                headers.append(("cardmon-truncated-from-bytes", str(len(value)).encode()))
                value = value[:_DEAD_LETTER_MAX_BYTES]
            sends.append(await self._producer.send(
                self.settings.dead_letter_topic, value=value, key=key, headers=headers))
        await asyncio.gather(*sends)
        if self.metrics is not None:
            self.metrics.observe_rejections(reasons)
            self.metrics.observe_dead_letters(reasons)

    async def _commit(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        assert self._consumer is not None
        offsets = {tp: messages[-1].offset + 1 for tp, messages in batch.items() if messages}
        try:
            await self._consumer.commit(offsets)
        except CommitFailedError as error:
            # The group rebalanced under us: the new owner redelivers; alerts are idempotent.
            log.warning("offset commit failed after a rebalance (batch will be redelivered): %s", error)

    def _report_lag(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        assert self._consumer is not None and self.metrics is not None
        for tp, messages in batch.items():
            highwater = self._consumer.highwater(tp)
            if highwater is not None and messages:
                self.metrics.set_lag(tp.topic, tp.partition, max(0, highwater - messages[-1].offset - 1))
