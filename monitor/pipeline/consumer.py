"""The Kafka side: consume micro-batches, dead-letter bad messages, commit safely.

Commit protocol, per micro-batch (:class:`monitor.kafka.reader.PartitionReader`, over
``AIOKafkaConsumer.getmany``), in this order:

0. read the batch (the next batch is read while this one is handled: see *Overlap*
   below); a record batch the client cannot read (bad CRC, unknown or
   undecodable compression) pauses only its partition, is counted per topic and
   partition and retried with backoff (:mod:`monitor.kafka.reader`): the other partitions go
   on; it is skipped only with ``kafka.skip_unreadable_after_seconds`` (a dead letter
   names its offsets, then the offset after it is committed);
1. process the whole batch (:class:`monitor.pipeline.processor.BatchProcessor`): decode,
   classify, VIP lookup, metrics, alert policy (while the consumer is catching up, see
   *Overlap*, each batch is decoded in a child process from the moment it is read,
   :mod:`monitor.pipeline.decode_pool`, with ``kafka.decode_processes`` 1 or more; its
   frame is awaited before the processing lock is taken); a message that breaks decoding or
   processing is a rejection, the rest of the batch goes on. It runs in a worker thread
   holding :attr:`TransactionConsumer.processing_lock` (polars releases the GIL), so the
   event loop goes on meanwhile (the delivery worker, fetching, scrapes); terminal
   health takes the batch's columns on its own thread (:mod:`monitor.health.worker`),
   so its evaluations never hold processing back;
2. write the batch's VIP failures and incident changes (storm control) to the alert
   store in one durable transaction. A **transient** error (connection, lock, disk,
   timeout) is retried with capped backoff for ``kafka.retry_timeout_seconds``
   (:func:`monitor.faults.retry_transient`); a **permanent** one caused by content
   (``DataError``, ``IntegrityError``, ``ValueError``...; :mod:`monitor.faults`) is
   isolated by bisecting the failures (:mod:`monitor.pipeline.recorder`): the ones the store
   refuses alone become ``store_rejected`` rejections, the others are stored;
   then the recovery watch (optional, :mod:`monitor.pipeline.recovery`) takes the
   batch's VIP approvals and matches and decides watches against the store, in the
   worker thread; an error there is logged and never holds the batch back (the
   approvals wait in its buffer for the next batch);
3. send each rejected message to the dead-letter topic, PAN-scrubbed and bounded
   (:class:`monitor.kafka.dead_letters.DeadLetter`: value, key and every header cut to fit
   one request), with its reason in headers, and wait until the broker has
   acknowledged every one. Transient produce errors are retried (only the records that
   failed) within the same bound; a record the broker refuses for good is replaced by
   its minimal copy (reason and source coordinates), and if even that is refused it is
   logged and counted (``cardmon_dead_letters_lost_total``), never retried forever;
4. commit, per partition, the offset after the batch's last message (transient commit
   errors retried within the bound; a commit refused after a rebalance is logged: the
   partition's new owner reads the batch again);
5. update the consumer-lag gauge from the partitions' high watermarks.

Overlap: while a large batch (half the ``getmany`` bound or more: the consumer is catching
up) is handled (steps 1-5), the next one is read (step 0), so its fetch and record
unpacking run on the loop while this one is processed in the thread, and its decode
starts in the child process as soon as it is read. A live consumer
(small batches) reads after the commit: a read-ahead would take a sliver and make what
arrives meanwhile wait one batch more.
Batches are still handled one at a time, in order, and each is committed only after its
own store write; the next batch's partition progress (the watermark) is read before it
is prefetched. A batch that fails with a Kafka error rewinds the prefetched one too, and
an unreadable record batch is skipped (its offset committed) only while no batch is
being handled.

The stop event (SIGTERM) ends any retry at once: the batch is left uncommitted and is
redelivered, and :meth:`TransactionConsumer.run` returns normally. A transient failure
outlasting the bound raises :class:`monitor.faults.RetryTimeout` out of ``run``
(``cardmon run`` exits 1; the batch is redelivered after the restart). A crash anywhere
before step 4 redelivers the batch too; steps 2 and 3 are idempotent for alerts (event
IDs and content-derived alert IDs), so a replay never notifies a manager twice. Dead
letters and metrics are at-least-once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Any, Protocol

import polars as pl
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
)

from monitor.config import KafkaSettings
from monitor.dead_letter_copy import dead_letter_copy
from monitor.domain import VipFailure
from monitor.faults import Stopping, is_permanent_store_error, retry_transient
from monitor.incidents import IncidentChange
from monitor.kafka.batches import RecordBatchInfo
from monitor.kafka.clients import kafka_client_options
from monitor.kafka.dead_letters import MAX_REQUEST_BYTES, DeadLetter, send_dead_letters
from monitor.kafka.reader import Batch, PartitionReader
from monitor.pipeline.decode_pool import DecodePool, PendingDecode
from monitor.pipeline.decoder import DecodedFrame, Rejection
from monitor.pipeline.processor import BatchProcessor, ProcessedBatch
from monitor.pipeline.recorder import record_isolating
from monitor.pipeline.watermark import PartitionProgress
from monitor.privacy import scrub_pans

__all__ = ["ConsumerFaults", "ConsumerMetrics", "RecoveryFollower", "TransactionConsumer"]

log = logging.getLogger(__name__)

#: A batch as read, with its decode already sent to the child process (``None``: in-process).
_Read = tuple[Batch, PendingDecode | None]
#: Stores a batch's VIP failures and its incident changes, durably, before the commit.
RecordFailures = Callable[[Sequence[VipFailure], Sequence[IncidentChange]], Awaitable[Any]]


class ConsumerFaults(Protocol):
    """Fault metrics the consumer reports (see :class:`monitor.metrics.ConsumerFaultMetrics`)."""

    def watch_partition(self, topic: str, partition: int) -> None: ...
    def observe_read_error(self, topic: str, partition: int) -> None: ...
    def set_readable(self, topic: str, partition: int) -> None: ...
    def forget_partition(self, topic: str, partition: int) -> None: ...
    def observe_batch_skipped(self, topic: str, partition: int) -> None: ...
    def observe_retry(self, topic: str, step: str) -> None: ...
    def observe_dead_letter_lost(self, reason: str) -> None: ...


class ConsumerMetrics(Protocol):
    """Pipeline metrics the consumer reports (see :mod:`monitor.metrics`)."""

    @property
    def faults(self) -> ConsumerFaults: ...  # unreadable partitions, retries, lost dead letters

    def observe_rejections(self, reasons: dict[str, int]) -> None: ...
    def observe_dead_letters(self, reasons: dict[str, int]) -> None: ...
    def observe_batch_duration(self, seconds: float, size: int) -> None: ...
    def set_lag(self, topic: str, partition: int, lag: int) -> None: ...
    def forget_lag(self, topic: str, partition: int) -> None: ...


class RecoveryFollower(Protocol):
    """The recovery watch (:class:`~monitor.pipeline.recovery.RecoveryWatch`)."""

    def after_batch(self, approvals: pl.DataFrame, *, failures: bool = ...) -> object: ...


class _LagCleanup(ConsumerRebalanceListener):  # type: ignore[misc]
    """Keeps per-partition series in step with a rebalance.

    Drops the lag and unreadable series (and the reader's state) of partitions this member
    no longer owns; starts the fault counters of newly assigned ones at zero.
    """

    def __init__(self, metrics: ConsumerMetrics | None, reader: PartitionReader) -> None:
        self._metrics = metrics
        self._reader = reader

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._reader.forget(revoked)
        if self._metrics is not None:
            for tp in revoked:
                self._metrics.forget_lag(tp.topic, tp.partition)
                self._metrics.faults.forget_partition(tp.topic, tp.partition)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if self._metrics is not None:
            for tp in assigned:
                self._metrics.faults.watch_partition(tp.topic, tp.partition)
        log.info("partitions assigned: %s", sorted((tp.topic, tp.partition) for tp in assigned))


class TransactionConsumer:
    """Consumes ``card.transactions`` in micro-batches for one consumer group member.

    Args:
        settings: Kafka settings (topic, group, batch bounds, retry bound).
        processor: turns a batch into rejections and VIP failures.
        record_failures: durably stores a batch's VIP failures and incident changes
            (awaited before commit).
        metrics: pipeline metrics, or ``None``.
        processing_lock: held while ``processor.process`` runs (in a worker thread); share it
            with whatever else changes the processor's state (``None``: a lock of its own).
        recovery: the recovery watch, given each stored batch's VIP approvals (``None``: off).

    Attributes:
        processing_lock: the lock ``processor.process`` runs under.
        decode_pool: decodes the batches read while catching up in
            ``kafka.decode_processes`` child processes (started the first time the
            consumer catches up, closed by :meth:`stop`).
    """

    def __init__(self, settings: KafkaSettings, *, processor: BatchProcessor,
                 record_failures: RecordFailures, metrics: ConsumerMetrics | None = None,
                 processing_lock: threading.Lock | None = None,
                 recovery: RecoveryFollower | None = None) -> None:
        self.settings = settings
        self.recovery = recovery
        self.processor = processor
        self._record_failures = record_failures
        self.metrics = metrics
        self.processing_lock = processing_lock if processing_lock is not None else threading.Lock()
        self._handling = asyncio.Lock()  # held while a batch is handled (steps 1-5)
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._reader: PartitionReader | None = None
        self._stop = asyncio.Event()  # run()'s stop event; never set when handle() runs alone
        self.decode_pool = DecodePool(settings.decode_processes)
        self.batches = 0
        self.events = 0

    @property
    def unreadable(self) -> dict[TopicPartition, str]:
        """Partitions held at a record batch that cannot be read, with the error."""
        return self._reader.unreadable if self._reader is not None else {}

    async def start(self) -> None:
        """Connect and join the consumer group."""
        options = kafka_client_options(self.settings)
        self._producer = AIOKafkaProducer(acks="all", linger_ms=5,
                                          max_request_size=MAX_REQUEST_BYTES, **options)
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            group_id=self.settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self.settings.auto_offset_reset,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=self.settings.heartbeat_interval_ms,
            **options,
        )
        await self._consumer.start()
        self._reader = PartitionReader(
            self._consumer, timeout_ms=self.settings.batch_timeout_ms,
            max_records=self.settings.batch_max_records,
            faults=self.metrics.faults if self.metrics is not None else None,
            skip_after=self.settings.skip_unreadable_after_seconds,
            skip=self._skip_unreadable, client_options=options,
            reset=self.settings.auto_offset_reset)
        self._consumer.subscribe([self.settings.topic],
                                 listener=_LagCleanup(self.metrics, self._reader))

    async def stop(self) -> None:
        """Leave the group, close both clients and the decode pool (uncommitted work is redelivered)."""
        await asyncio.to_thread(self.decode_pool.close)  # waits for the child to exit
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        self._reader = None
        if consumer is not None:
            await consumer.stop()
        if producer is not None:
            await producer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set. Never returns because of a bad message.

        Raises:
            monitor.faults.RetryTimeout: a transient failure of a batch step (store,
                dead-letter produce, commit) lasted ``kafka.retry_timeout_seconds``; the
                batch is uncommitted and will be redelivered.
        """
        reader = self._reader
        assert reader is not None, "call start() first"
        self._stop = stop
        backoff = 0.5
        ahead: asyncio.Task[_Read] | None = None  # the next batch, read while one is handled
        try:
            while not stop.is_set():
                try:
                    reading, ahead = ahead, None
                    batch, decoding = await (reading if reading is not None else self._read(reader))
                    if batch:
                        progress = await self._progress(batch)  # before the next read moves positions
                        if self._behind(batch):
                            ahead = asyncio.create_task(self._read(reader), name="cardmon-read-ahead")
                        try:
                            await self.handle(batch, progress=progress, decoding=decoding)
                        except KafkaError:
                            # Nothing of this batch was committed: read it again, lose nothing.
                            await self._rewind(batch, await _drop(ahead))
                            ahead = None
                            raise
                    backoff = 0.5
                except Stopping:
                    log.info("stopping: the batch in hand is left uncommitted (it is redelivered)")
                    return
                except KafkaError as error:
                    log.warning("Kafka error, retrying in %.1f s: %s", backoff, error)
                    await self._pause(backoff)
                    backoff = min(backoff * 2, 10.0)
        finally:
            dropped = await _drop(ahead)  # read, never handled nor committed: read again
            if dropped and self._consumer is not None:
                with suppress(KafkaError):  # revoked meanwhile: its new owner reads it
                    await self._rewind(dropped, None)

    async def _read(self, reader: PartitionReader) -> _Read:
        """Read the next batch; when catching up, send it to the decode pool at once.

        Only then does decoding in the child overlap something (the batch before); a live
        batch would wait for the round trip, so it is decoded in-process, as it is handled.
        """
        batch = await reader.read()
        return batch, self.decode_pool.submit(_values(batch)) if batch and self._behind(batch) else None

    def _behind(self, batch: Batch) -> bool:
        """Whether to read the next batch while this one is handled: only when catching up.

        A batch at least half the ``getmany`` bound means more is waiting: reading ahead
        then overlaps the next fetch and its record unpacking with this batch's
        processing. A smaller one means the consumer is live: reading ahead would only
        take a sliver of what arrived, and everything arriving while this batch is
        handled would wait one batch more; so it reads after the commit instead.
        """
        return sum(len(messages) for messages in batch.values()) * 2 >= self.settings.batch_max_records

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the stop event is set."""
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _rewind(self, batch: Batch, ahead: Batch | None) -> None:
        """Seek each partition back to ``batch``'s first message, or the read-ahead batch's.

        Both batches are then redelivered, in order.
        """
        assert self._consumer is not None
        for read in (ahead or {}, batch):  # the earlier batch last: its offsets win
            for tp, messages in read.items():
                if messages and tp in self._consumer.assignment():
                    self._consumer.seek(tp, messages[0].offset)

    async def handle(self, batch: Batch, *, progress: PartitionProgress | None = None,
                     decoding: PendingDecode | None = None) -> ProcessedBatch:
        """Process, store, dead-letter and commit one batch (steps 1–5).

        Args:
            batch: the records read, per partition.
            progress: the partitions' progress when ``batch`` was read; ``None`` reads it now.
            decoding: the batch's decode sent to the decode pool when it was read;
                ``None`` decodes it in-process.

        Raises:
            monitor.faults.Stopping: the stop event was set while a step was retried
                (nothing committed).
            monitor.faults.RetryTimeout: a step kept failing transiently past the bound.
        """
        async with self._handling:
            return await self._handle(batch, progress, decoding)

    async def _handle(self, batch: Batch, progress: PartitionProgress | None,
                      decoding: PendingDecode | None) -> ProcessedBatch:
        started = time.perf_counter()
        records = [record for messages in batch.values() for record in messages]
        values = [record.value for record in records]
        if progress is None:
            progress = await self._progress(batch)
        decoded = None if decoding is None else await self.decode_pool.result(decoding, stop=self._stop)
        result = await asyncio.to_thread(self._process, values, [record.partition for record in records],
                                         progress, decoded)
        if result.failures or result.incidents:
            result.rejections.extend(await self._store(result))
        if self.recovery is not None:
            await self._follow_recoveries(result)
        if result.rejections:
            await self._dead_letter(records, result.rejections)
        await self._commit(batch)
        self.batches += 1
        self.events += result.events
        if self.metrics is not None:
            self.metrics.observe_batch_duration(time.perf_counter() - started, len(records))
            self._report_lag(batch)
        return result

    def _process(self, values: list[bytes | None], partitions: list[int],
                 progress: PartitionProgress, decoded: DecodedFrame | None = None) -> ProcessedBatch:
        """Step 1, in a worker thread, under :attr:`processing_lock` (``decoded``: by the child)."""
        with self.processing_lock:
            return self.processor.process(values, partitions=partitions, progress=progress,
                                          decoded=decoded)

    async def _progress(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
                        ) -> PartitionProgress:
        """The assigned partitions and those read to their end (see :mod:`monitor.pipeline.watermark`)."""
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

    async def _retry(self, attempt: Callable[[], Awaitable[Any]], *, step: str, what: str,
                     is_permanent: Callable[[BaseException], bool] = lambda _: False) -> Any:
        """Run one step, transient errors retried within the bound; the stop event ends it."""
        def count(_: BaseException) -> None:
            if self.metrics is not None:
                self.metrics.faults.observe_retry(self.settings.topic, step)

        return await retry_transient(attempt, what=what, stop=self._stop,
                                     timeout_seconds=self.settings.retry_timeout_seconds,
                                     is_permanent=is_permanent, on_retry=count)

    async def _write(self, failures: list[VipFailure], incidents: list[IncidentChange]) -> None:
        """One store write, transient errors retried; a permanent error is raised."""
        await self._retry(lambda: self._record_failures(failures, incidents), step="store",
                          what="alert store write", is_permanent=is_permanent_store_error)

    async def _store(self, result: ProcessedBatch) -> list[Rejection]:
        """Store the batch's failures and incidents; rejections for what the store refuses."""
        return await record_isolating(self._write, result.failures, result.failure_indices,
                                      result.incidents)

    async def _follow_recoveries(self, result: ProcessedBatch) -> None:
        """Step 2, after the store write: the recovery watch, in a worker thread; never raises."""
        assert self.recovery is not None
        try:
            await asyncio.to_thread(self.recovery.after_batch, result.approvals,
                                    failures=bool(result.failures))
        except Exception as error:  # noqa: BLE001 - the approvals wait in its buffer
            log.warning("recovery watch failed after a batch (%s: %s); its approvals are matched "
                        "after the next one", type(error).__name__, error)

    async def _dead_letter(self, records: list[ConsumerRecord[bytes, bytes]],
                           rejections: list[Rejection]) -> None:
        by_index: dict[int, list[Rejection]] = {}
        for rejection in rejections:
            by_index.setdefault(rejection.index, []).append(rejection)
        reasons: dict[str, int] = {}
        pending: list[tuple[str, DeadLetter]] = []  # (reason, record) of each rejected message
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
            pending.append((reason, DeadLetter.bounded(key=key, value=value, headers=headers)))

        await send_dead_letters(
            pending, self._send, on_lost=self._dead_letter_lost,
            retry=lambda attempt: self._retry(attempt, step="dead_letter", what="dead-letter produce"))
        if self.metrics is not None:
            self.metrics.observe_rejections(reasons)
            self.metrics.observe_dead_letters(reasons)

    async def _send(self, letter: DeadLetter) -> None:
        """Produce one dead letter and wait for the broker's acknowledgement."""
        assert self._producer is not None
        delivery = await self._producer.send(self.settings.dead_letter_topic, value=letter.value,
                                             key=letter.key, headers=letter.headers)
        await delivery

    def _dead_letter_lost(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.faults.observe_dead_letter_lost(reason)

    async def _commit(self, batch: Batch) -> None:
        await self._commit_offsets(
            {tp: messages[-1].offset + 1 for tp, messages in batch.items() if messages})

    async def _commit_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        try:
            await self._retry(
                lambda: consumer.commit(offsets), step="commit", what="offset commit",
                is_permanent=lambda e: isinstance(e, (CommitFailedError, IllegalStateError)))
        except (CommitFailedError, IllegalStateError) as error:
            # The group rebalanced under us: the new owner redelivers; alerts are idempotent.
            log.warning("offset commit failed after a rebalance (batch will be redelivered): %s", error)

    async def _skip_unreadable(self, tp: TopicPartition, batch: RecordBatchInfo) -> None:
        """Dead-letter a record naming an unreadable batch's offsets, then commit past it."""
        letter = DeadLetter.bounded(key=None, value=b"", headers=[
            ("cardmon-reason", b"unreadable_batch"),
            ("cardmon-detail", f"{batch.codec} record batch, {batch.error}".encode()),
            ("cardmon-source-topic", tp.topic.encode()),
            ("cardmon-source-partition", str(tp.partition).encode()),
            ("cardmon-source-offset", str(batch.base_offset).encode()),
            ("cardmon-source-last-offset", str(batch.next_offset - 1).encode()),
        ])
        await self._retry(lambda: self._send(letter), step="dead_letter", what="dead-letter produce")
        async with self._handling:  # never ahead of a batch of this partition still being handled
            await self._commit_offsets({tp: batch.next_offset})
        if self.metrics is not None:
            self.metrics.observe_dead_letters({"unreadable_batch": 1})

    def _report_lag(self, batch: Batch) -> None:
        assert self._consumer is not None and self.metrics is not None
        for tp, messages in batch.items():
            highwater = self._consumer.highwater(tp)
            if highwater is not None and messages:
                self.metrics.set_lag(tp.topic, tp.partition, max(0, highwater - messages[-1].offset - 1))


def _values(batch: Batch) -> list[bytes | None]:
    """The batch's message values, in the order :meth:`TransactionConsumer.handle` processes them."""
    return [record.value for messages in batch.values() for record in messages]


async def _drop(reading: asyncio.Task[_Read] | None) -> Batch | None:
    """Stop a read-ahead (and its decode); the batch it read (never handled), or ``None``."""
    if reading is None:
        return None
    if not reading.done():
        reading.cancel()
    try:
        batch, decoding = await reading
        if decoding is not None:
            decoding.cancel()
        return batch
    except asyncio.CancelledError:
        if not reading.cancelled():
            raise  # the caller itself is cancelled
        return None
    except KafkaError:
        return None  # read again after the rewind or the restart
