"""Record batches as they are on the broker: offsets, codec, CRC, readable or not.

The consumer sees records; an operator facing an unreadable batch needs the batch:
where it starts, where the next one starts, which compression it claims and why it
cannot be read. :func:`fetch_batches` asks the partition's leader for the raw bytes
from an offset (one Kafka ``Fetch`` request through aiokafka's protocol classes) and
describes each record batch *without* trusting it: the header is parsed, the CRC
checked, then the records are decoded in a ``try`` so a bad batch is reported, not
raised. ``cardmon kafka skip-batch`` (:mod:`monitor.cli`) is built on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords

__all__ = ["CODECS", "RecordBatchInfo", "fetch_batches"]

#: Kafka's compression codecs by attribute value (bits 0-2 of a batch's attributes).
CODECS: Final[dict[int, str]] = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
#: Bytes fetched at most in one look (aiokafka's default max_partition_fetch_bytes).
_FETCH_BYTES: Final = 1_048_576


@dataclass(frozen=True, slots=True)
class RecordBatchInfo:
    """One record batch of a partition, described from its raw bytes.

    Attributes:
        base_offset: offset of its first record.
        next_offset: offset after its last record (where the next batch starts).
        codec: ``none``, ``gzip``, ``snappy``, ``lz4``, ``zstd``, or ``unknown (n)``.
        crc_valid: whether its CRC-32C matches its bytes.
        records: records decoded, or ``None`` when it cannot be read.
        error: why it cannot be read (``"CorruptRecordException: ..."``), else ``None``.
    """

    base_offset: int
    next_offset: int
    codec: str
    crc_valid: bool
    records: int | None
    error: str | None

    @property
    def readable(self) -> bool:
        """Whether a consumer can read it."""
        return self.error is None


def _describe(batch: Any) -> RecordBatchInfo:
    # Message format v2 (Kafka 0.11+, every current client); v0/v1 name two fields apart.
    codec_id = getattr(batch, "compression_type", getattr(batch, "_compression_type", -1))
    base_offset = getattr(batch, "base_offset", getattr(batch, "offset", -1))
    crc_valid = bool(batch.validate_crc())
    records: int | None = None
    error: str | None = None
    if not crc_valid:
        error = "CorruptRecordException: invalid CRC"
    else:
        try:
            records = sum(1 for _ in batch)
        except Exception as failure:  # noqa: BLE001 (decompressors raise their own types)
            error = f"{type(failure).__name__}: {failure}"[:300]
    return RecordBatchInfo(base_offset=base_offset, next_offset=batch.next_offset,
                           codec=CODECS.get(codec_id, f"unknown ({codec_id})"),
                           crc_valid=crc_valid, records=records, error=error)


async def fetch_batches(client_options: Mapping[str, Any], tp: TopicPartition,
                        offset: int) -> list[RecordBatchInfo]:
    """Describe the record batches of ``tp`` from the one holding ``offset`` on.

    Args:
        client_options: aiokafka client keyword arguments
            (:func:`monitor.kafka.clients.kafka_client_options`).
        tp: the partition.
        offset: an offset inside the first batch wanted (the broker returns whole batches,
            so the first one may start before it).

    Returns:
        Up to about 1 MiB worth of batches, in offset order; empty at the log end.

    Raises:
        aiokafka.errors.KafkaError: the broker, the topic or the partition is unavailable,
            or the offset is out of range.
    """
    client = AIOKafkaClient(**client_options)
    await client.bootstrap()
    try:
        await client.add_topic(tp.topic)
        leader = client.cluster.leader_for_partition(tp)
        if leader is None or leader == -1:
            raise KafkaError(f"no leader for {tp.topic}[{tp.partition}]")
        request = FetchRequest(max_wait_time=100, min_bytes=1, max_bytes=_FETCH_BYTES,
                               isolation_level=0,
                               topics=[(tp.topic, [(tp.partition, offset, _FETCH_BYTES)])])
        response = await client.send(leader, request)
    finally:
        await client.close()
    batches: list[RecordBatchInfo] = []
    for _topic, partitions in response.topics:
        for partition, error_code, _highwater, *part_data in partitions:
            if partition != tp.partition:
                continue
            if error_code:
                raise for_code(error_code)(f"{tp.topic}[{tp.partition}] at offset {offset}")
            records = MemoryRecords(part_data[-1])
            while records.has_next():
                batch = records.next_batch()
                if batch is None:
                    break
                batches.append(_describe(batch))
    return batches
