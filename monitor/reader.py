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
   and logs the topic, partition and offset with the way out (``cardmon kafka
   skip-batch``, docs/operations.md) — all within seconds of the first error;
3. reads it again on its own, one record at a time so every readable record before the
   bad batch is still processed, after a backoff (1 s doubling to 30 s): a batch that
   reads again (a transient corruption on the wire) clears the gauge.

The partition's other messages wait behind the batch (its order is kept, nothing is
skipped silently); the other partitions go on. Only an operator skips a batch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Final, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import ConsumerStoppedError

__all__ = ["Batch", "PartitionReader", "ReadFaults"]

log = logging.getLogger(__name__)

#: One ``getmany`` result: records per partition, in offset order.
Batch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]

#: How long one partition is read on its own while looking for the unreadable one
#: (milliseconds): long enough for a fetch round trip to bring the bad batch back.
_PROBE_TIMEOUT_MS: Final = 1_000
#: First and longest wait before an unreadable partition is read again (seconds).
_FIRST_RETRY_SECONDS: Final = 1.0
_MAX_RETRY_SECONDS: Final = 30.0


class ReadFaults(Protocol):
    """The metrics a reader moves (see :class:`monitor.metrics.ConsumerFaultMetrics`)."""

    def observe_read_error(self, topic: str, partition: int) -> None: ...
    def set_readable(self, topic: str, partition: int) -> None: ...
    def forget_partition(self, topic: str, partition: int) -> None: ...


@dataclass(slots=True)
class _Unreadable:
    """A paused partition: when to read it again, how often it failed, the last error."""

    retry_at: float  # time.monotonic()
    failures: int
    error: str


class PartitionReader:
    """Reads micro-batches from a started consumer; sets aside partitions it cannot read.

    Args:
        consumer: the started, subscribed aiokafka consumer.
        timeout_ms: longest wait for a batch (``kafka.batch_timeout_ms``).
        max_records: most records per batch (``kafka.batch_max_records``).
        faults: metrics, or ``None``.
    """

    def __init__(self, consumer: AIOKafkaConsumer, *, timeout_ms: int, max_records: int,
                 faults: ReadFaults | None = None) -> None:
        self._consumer = consumer
        self._timeout_ms = timeout_ms
        self._max_records = max_records
        self._faults = faults
        self._unreadable: dict[TopicPartition, _Unreadable] = {}  # <paused partition: state>

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
        """
        self._forget_revoked()
        now = time.monotonic()
        for tp, state in self._unreadable.items():
            if state.retry_at <= now:
                return await self._read_again(tp, state)
        try:
            return await self._consumer.getmany(timeout_ms=self._timeout_ms,
                                                max_records=self._max_records)
        except ConsumerStoppedError:
            raise
        except Exception as error:  # noqa: BLE001 (a decompressor raises its own types)
            return await self._isolate(error)

    async def _isolate(self, error: Exception) -> Batch:
        """Read every assigned partition alone; pause the ones that raise."""
        log.warning("reading a batch failed (%s: %s); reading each partition alone to find "
                    "the unreadable one", type(error).__name__, error)
        batch: Batch = {}
        found = False
        for tp in sorted(self._consumer.assignment() - set(self._unreadable)):
            try:
                got = await self._consumer.getmany(tp, timeout_ms=_PROBE_TIMEOUT_MS,
                                                   max_records=self._max_records)
            except ConsumerStoppedError:
                raise
            except Exception as own:  # noqa: BLE001
                found = True
                # Read it again at once, one record at a time: the records before the bad
                # batch are processed and the position ends exactly at the bad batch.
                self._set_aside(tp, own, retry_in=0.0)
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
        except Exception as error:  # noqa: BLE001
            if records:  # the readable records first; the bad batch is next
                consumer.pause(tp)
                state.retry_at = 0.0
                return {tp: records}
            delay = min(_FIRST_RETRY_SECONDS * 2 ** state.failures, _MAX_RETRY_SECONDS)
            self._set_aside(tp, error, retry_in=delay, failures=state.failures + 1)
            return {}
        del self._unreadable[tp]
        log.info("partition %s[%d] is readable again at offset %d", tp.topic, tp.partition,
                 consumer.position(tp) if tp in consumer.assignment() else -1)
        if self._faults is not None:
            self._faults.set_readable(tp.topic, tp.partition)
        return {tp: records} if records else {}

    def _set_aside(self, tp: TopicPartition, error: Exception, *, retry_in: float,
                   failures: int = 0) -> None:
        """Pause ``tp``, count the error, and say where it is stuck and what to do."""
        self._consumer.pause(tp)
        description = f"{type(error).__name__}: {error}"[:300]
        self._unreadable[tp] = _Unreadable(time.monotonic() + retry_in, failures, description)
        if self._faults is not None:
            self._faults.observe_read_error(tp.topic, tp.partition)
        if retry_in == 0.0:
            return  # the records before the bad batch are read first; then it is logged
        offset = self._consumer.position(tp) if tp in self._consumer.assignment() else -1
        log.error("partition %s[%d] cannot be read at offset %d (%s): its later messages wait, "
                  "the other partitions go on; retrying in %.0f s. If it never reads, stop every "
                  "cardmon of the group and run `cardmon kafka skip-batch --topic %s --partition "
                  "%d` (docs/operations.md)", tp.topic, tp.partition, offset, description,
                  retry_in, tp.topic, tp.partition)

    def _forget_revoked(self) -> None:
        """Drop the state of partitions a rebalance took away (their new owner retries)."""
        assigned = self._consumer.assignment()
        for tp in [tp for tp in self._unreadable if tp not in assigned]:
            del self._unreadable[tp]
            if self._faults is not None:
                self._faults.forget_partition(tp.topic, tp.partition)
