"""Reading micro-batches, with a record batch that cannot be read isolated to its partition.

A record batch on the broker can be unreadable for the client: its CRC does not
match (``CorruptRecordException``), its compression codec is unknown
(``UnsupportedCodecError``) or its compressed bytes do not decompress (a
``cramjam`` error). aiokafka raises that from ``getmany`` without saying which
partition it came from, keeps its position before the batch and raises again on the
next fetch: left alone, the consumer would retry it forever in silence.

:class:`PartitionReader` instead:

1. on an error from ``getmany``, reads each assigned partition on its own to find
   the one(s) that raise (the others' records are returned as usual);
2. **pauses** such a partition, counts ``cardmon_partition_read_errors_total`` and
   sets ``cardmon_partition_unreadable`` to 1 for it (topic and partition labels),
   and logs the topic, partition and offset with the way out (docs/operations.md) —
   all within seconds of the first error;
3. reads it again on its own, one record at a time so every readable record before the
   bad batch is still processed, after a backoff (1 s doubling to 30 s): a batch that
   reads again (a transient corruption on the wire) clears the gauge;
4. only when ``kafka.skip_unreadable_after_seconds`` is set and the batch has been
   unreadable that long: describes it from the broker's raw bytes
   (:func:`monitor.kafka.batches.fetch_batches`), hands it to ``skip`` (the consumer
   dead-letters a record naming its offsets and commits past it), counts
   ``cardmon_batches_skipped_total`` and reads on after it.

By default (no skipping) the partition's later messages wait behind the batch, in
order; the other partitions go on. Nothing is skipped without an operator's setting.

**Fresh records** (the top-up). aiokafka fetches in the background, but asks the broker
for a partition again only once what it buffered for it has been drained by ``getmany``;
so the buffer a ``getmany`` returns was fetched when the *previous* batch was read, and a
live record that reached the broker while that batch was handled waited a whole batch
more (measured with ``bench.throughput --live-trace``: the newest record of a batch was
as old as the previous batch's handling). :meth:`PartitionReader.read` therefore tops
a batch up that is below the bound: a second ``getmany``, waiting at most
``top_up_ms`` for the fetch the first one started, appends what reached the broker
meanwhile (the same partitions' next records, in order). A top-up that hits an
unreadable batch returns the first part alone; the next read meets the error again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import (
    ConsumerStoppedError,
    CorruptRecordException,
    KafkaError,
    UnsupportedCodecError,
)

from monitor.kafka.batches import RecordBatchInfo, fetch_batches

__all__ = ["Batch", "PartitionReader", "ReadFaults", "SkipBatch"]

log = logging.getLogger(__name__)

#: One ``getmany`` result: records per partition, in offset order.
Batch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
#: Records that an unreadable batch is skipped (dead letter, commit past it); raises to retry.
SkipBatch = Callable[[TopicPartition, RecordBatchInfo], Awaitable[None]]

#: How long one partition is read on its own while looking for the unreadable one
#: (milliseconds): long enough for a fetch round trip to bring the bad batch back.
_PROBE_TIMEOUT_MS: Final = 1_000
#: First and longest wait before an unreadable partition is read again (seconds).
_FIRST_RETRY_SECONDS: Final = 1.0
_MAX_RETRY_SECONDS: Final = 30.0
#: Longest wait of a top-up for the fetch the first ``getmany`` started (milliseconds): a
#: round trip to a broker that has new records; with none it ends the wait, at most this.
TOP_UP_MS: Final = 25


class ReadFaults(Protocol):
    """The metrics a reader moves (see :class:`monitor.metrics.ConsumerFaultMetrics`)."""

    def observe_read_error(self, topic: str, partition: int) -> None: ...
    def set_readable(self, topic: str, partition: int) -> None: ...
    def forget_partition(self, topic: str, partition: int) -> None: ...
    def observe_batch_skipped(self, topic: str, partition: int) -> None: ...


@dataclass(slots=True)
class _Unreadable:
    """A paused partition: since when, when to read it again, failures, the last error."""

    since: float  # time.monotonic() of the first failure
    retry_at: float  # time.monotonic()
    failures: int
    error: str


def _batch_error(error: BaseException) -> bool:
    """Whether an error of ``getmany`` comes from a record batch's bytes (not the group or the broker).

    aiokafka's own batch errors, and anything not a Kafka error: a decompressor
    (``cramjam``) or a parser raises its own types. A coordinator or authorisation
    error is a ``KafkaError`` of another kind: it holds no partition.
    """
    return isinstance(error, (CorruptRecordException, UnsupportedCodecError)) \
        or not isinstance(error, KafkaError)


def _describe(error: BaseException) -> str:
    text, name = str(error), type(error).__name__
    return (text if text.startswith(name) else f"{name}: {text}")[:300]


class PartitionReader:
    """Reads micro-batches from a started consumer; sets aside partitions it cannot read.

    Args:
        consumer: the started, subscribed aiokafka consumer.
        timeout_ms: longest wait for a batch (``kafka.batch_timeout_ms``).
        max_records: most records per batch (``kafka.batch_max_records``).
        faults: metrics, or ``None``.
        skip_after: seconds a batch stays unreadable before it is skipped; ``None``
            (the default) never skips.
        skip: what records a skip (dead letter and commit); needed with ``skip_after``.
        client_options: aiokafka client options, to read the raw batch before a skip.
        reset: the consumer's ``auto_offset_reset`` (where a partition never committed starts).
        top_up_ms: longest wait for a batch's top-up (see the module docstring); 0: none.
    """

    def __init__(self, consumer: AIOKafkaConsumer, *, timeout_ms: int, max_records: int,
                 faults: ReadFaults | None = None, skip_after: float | None = None,
                 skip: SkipBatch | None = None,
                 client_options: Mapping[str, Any] | None = None,
                 reset: str = "earliest", top_up_ms: int = TOP_UP_MS) -> None:
        if skip_after is not None and (skip is None or client_options is None):
            raise ValueError("skip_after needs skip and client_options")
        self._consumer = consumer
        self._timeout_ms = timeout_ms
        self._max_records = max_records
        self._faults = faults
        self._skip_after = skip_after
        self._skip = skip
        self._client_options = dict(client_options or {})
        self._reset = reset
        self._top_up_ms = top_up_ms
        self._unreadable: dict[TopicPartition, _Unreadable] = {}  # <paused partition: state>
        self._returned: dict[TopicPartition, int] = {}  # <partition: offset after the last record returned>

    @property
    def unreadable(self) -> dict[TopicPartition, str]:
        """The partitions held at an unreadable batch, with the last error's description."""
        return {tp: state.error for tp, state in self._unreadable.items()}

    async def read(self) -> Batch:
        """The next micro-batch (possibly empty); never raises because of a bad record batch.

        Raises:
            aiokafka.errors.ConsumerStoppedError: the consumer was stopped.
            aiokafka.errors.KafkaError: an error no single partition explains (group
                coordinator, authorisation); the caller backs off and reads again.
            Exception: what ``skip`` raised (e.g. :class:`monitor.faults.Stopping`).
        """
        batch = await self._read()
        for tp, records in batch.items():
            if records:
                self._returned[tp] = records[-1].offset + 1
        return batch

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop what is known of partitions a rebalance took away (call from the listener)."""
        for tp in partitions:
            self._returned.pop(tp, None)
            if self._unreadable.pop(tp, None) is not None and self._faults is not None:
                self._faults.forget_partition(tp.topic, tp.partition)

    async def _read(self) -> Batch:
        self._forget_revoked()
        now = time.monotonic()
        for tp, state in list(self._unreadable.items()):
            if state.retry_at <= now:
                return await self._read_again(tp, state)
        try:
            batch: Batch = await self._consumer.getmany(timeout_ms=self._timeout_ms,
                                                        max_records=self._max_records)
        except ConsumerStoppedError:
            raise
        except Exception as error:  # a decompressor raises its own types
            if not _batch_error(error):
                raise
            await self._put_back_dropped()
            return await self._isolate(error)
        return await self._top_up(batch)

    async def _top_up(self, batch: Batch) -> Batch:
        """``batch`` and the records that reached the broker since its buffer was fetched."""
        room = self._max_records - sum(len(records) for records in batch.values())
        if not batch or room <= 0 or self._top_up_ms <= 0:
            return batch  # idle (nothing to be late for) or catching up (the bound is reached)
        try:
            more: Batch = await self._consumer.getmany(timeout_ms=self._top_up_ms, max_records=room)
        except ConsumerStoppedError:
            raise
        except Exception as error:  # a decompressor raises its own types
            if not _batch_error(error):
                raise
            for tp, records in batch.items():  # put back what the failed call drained, not these
                if records:
                    self._returned[tp] = records[-1].offset + 1
            await self._put_back_dropped()
            return batch
        for tp, records in more.items():
            batch.setdefault(tp, []).extend(records)
        return batch

    async def _put_back_dropped(self) -> None:
        """Seek every readable partition back to the offset after what was returned.

        ``getmany`` drains partition after partition, moving each position as it goes;
        when one partition's batch then raises, the records already drained from the
        others are dropped with the exception, their positions already past them. Each
        partition goes back to the offset after the last record this reader returned, or
        (nothing returned since it was assigned) to its committed offset, or to where
        ``auto_offset_reset`` starts it.
        """
        consumer = self._consumer
        for tp in sorted(consumer.assignment() - set(self._unreadable)):
            offset = self._returned.get(tp)
            if offset is None:
                offset = await consumer.committed(tp)
            if offset is not None:
                consumer.seek(tp, offset)
            elif self._reset == "earliest":
                await consumer.seek_to_beginning(tp)
            # "latest" and never committed: it starts at the end anyway (records drained
            # from such a partition in the failing call are not read again).

    async def _isolate(self, error: Exception) -> Batch:
        """Read every assigned partition alone; pause the ones that raise."""
        log.warning("reading a batch failed (%s); reading each partition alone to find the "
                    "unreadable one", _describe(error))
        batch: Batch = {}
        found = False
        for tp in sorted(self._consumer.assignment() - set(self._unreadable)):
            try:
                got = await self._consumer.getmany(tp, timeout_ms=_PROBE_TIMEOUT_MS,
                                                   max_records=self._max_records)
            except ConsumerStoppedError:
                raise
            except Exception as own:
                if not _batch_error(own):
                    raise  # not this partition's bytes: the caller backs off and reads again
                found = True
                # Read it again at once, one record at a time: the records before the bad
                # batch are processed and the position ends exactly at the bad batch.
                self._consumer.pause(tp)
                now = time.monotonic()
                self._unreadable[tp] = _Unreadable(now, now, 0, _describe(own))
                self._count_error(tp)
                continue
            batch.update(got)
        if not found and not batch:
            raise error
        return batch

    async def _read_again(self, tp: TopicPartition, state: _Unreadable) -> Batch:
        """Read a paused partition alone, record by record, up to its bad batch."""
        consumer = self._consumer
        consumer.resume(tp)
        records: list[ConsumerRecord[bytes, bytes]] = []
        try:
            while len(records) < self._max_records:
                got = await consumer.getmany(tp, timeout_ms=_PROBE_TIMEOUT_MS, max_records=1)
                if not got:
                    break
                records.extend(got.get(tp, ()))
        except ConsumerStoppedError:
            raise
        except Exception as error:
            consumer.pause(tp)
            if not _batch_error(error):
                state.retry_at = 0.0
                if records:
                    return {tp: records}
                raise  # not the batch: the caller backs off, then this partition is read again
            if records:  # the readable records first; the bad batch comes next
                state.retry_at = 0.0
                return {tp: records}
            await self._still_unreadable(tp, state, error)
            return {}
        del self._unreadable[tp]
        log.info("partition %s[%d] is readable again at offset %d", tp.topic, tp.partition,
                 await self._position(tp))
        if self._faults is not None:
            self._faults.set_readable(tp.topic, tp.partition)
        return {tp: records} if records else {}

    async def _still_unreadable(self, tp: TopicPartition, state: _Unreadable,
                                error: Exception) -> None:
        """Count, log where it is stuck and what to do, then wait longer or skip."""
        self._count_error(tp)
        state.error = _describe(error)
        delay = min(_FIRST_RETRY_SECONDS * 2 ** state.failures, _MAX_RETRY_SECONDS)
        state.failures += 1
        state.retry_at = time.monotonic() + delay
        offset = await self._position(tp)
        stuck_for = time.monotonic() - state.since
        if self._skip_after is not None and stuck_for >= self._skip_after and offset >= 0:
            await self._skip_batch(tp, offset, state)
            return
        log.error("partition %s[%d] cannot be read at offset %d for %.0f s (%s): its later "
                  "messages wait, the other partitions go on; reading it again in %.0f s. "
                  "The way out is in docs/operations.md (unreadable record batch)",
                  tp.topic, tp.partition, offset, stuck_for, state.error, delay)

    async def _skip_batch(self, tp: TopicPartition, offset: int, state: _Unreadable) -> None:
        """Skip the unreadable batch at ``offset`` (the operator's setting allows it)."""
        assert self._skip is not None
        try:
            batches = await fetch_batches(self._client_options, tp, offset)
        except KafkaError as error:
            log.warning("cannot read the raw batch of %s[%d] at offset %d to skip it (%s); "
                        "trying again later", tp.topic, tp.partition, offset, _describe(error))
            return
        bad = next((b for b in batches if b.base_offset <= offset < b.next_offset), None)
        if bad is None or bad.readable:
            log.warning("the batch of %s[%d] at offset %d reads from the broker's raw bytes; "
                        "not skipped, reading it again later", tp.topic, tp.partition, offset)
            return
        await self._skip(tp, bad)
        self._consumer.seek(tp, bad.next_offset)
        self._returned[tp] = bad.next_offset
        self._consumer.resume(tp)
        del self._unreadable[tp]
        if self._faults is not None:
            self._faults.observe_batch_skipped(tp.topic, tp.partition)
            self._faults.set_readable(tp.topic, tp.partition)
        log.error("SKIPPED the unreadable record batch of %s[%d], offsets %d to %d (%s codec, "
                  "%s), after %.0f s (kafka.skip_unreadable_after_seconds); its records are not "
                  "monitored; a dead letter names them", tp.topic, tp.partition, bad.base_offset,
                  bad.next_offset - 1, bad.codec, bad.error, time.monotonic() - state.since)

    def _count_error(self, tp: TopicPartition) -> None:
        if self._faults is not None:
            self._faults.observe_read_error(tp.topic, tp.partition)

    async def _position(self, tp: TopicPartition) -> int:
        """The partition's next offset to read, or -1 when it is not known at once."""
        if tp not in self._consumer.assignment():
            return -1
        try:
            return await asyncio.wait_for(self._consumer.position(tp), timeout=1.0)
        except (TimeoutError, KafkaError):
            return -1

    def _forget_revoked(self) -> None:
        """Drop the state of partitions no longer assigned (their new owner retries)."""
        self.forget([tp for tp in [*self._unreadable, *self._returned]
                     if tp not in self._consumer.assignment()])
